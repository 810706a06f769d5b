"""A `scatter dev` grid for the benchmark scripts (compare.py, latency.py)."""

import os
import subprocess
import sys
import time


def start(exe, d):
    """Starts a 6-host `scatter dev` grid in `d` (its log in `d`.log); returns the process and
    the environment a client of it runs with. Ends the script if the grid is not up in 60 s."""
    proc = subprocess.Popen([exe, "dev", "--hosts", "6", "--data-dir", d],
                            stdout=open(f"{d}.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if os.path.exists(f"{d}/env"):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        sys.exit(f"the grid did not start; see {d}.log")
    env = dict(os.environ)
    for line in open(f"{d}/env"):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v.strip("'\"")
    return proc, env
