#!/usr/bin/env python3
"""Scatter against restic on the same data, side by side in one run (driven by compare.sh).

Each round starts a fresh 6-host grid (4+2, TLS, every process on this machine) and a fresh
restic repository, copies the seeded data sets in, and runs every workload with both tools,
alternating which goes first. It prints medians over the rounds, the throughput ratio
scatter/restic, peak RSS of each client, scatter's CPU use, and the hosts' peak RSS.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

EXE, WORK = sys.argv[1], sys.argv[2]
ROUNDS, BIG_MIB, HUGE_MIB = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
MB = 1e6


def gen_big(path, mib, seed):
    r = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(r.randbytes(1 << 20))


def gen_small(root, seed):
    r = random.Random(seed)
    for i in range(10_000):
        d = f"{root}/d{i // 500:02d}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i:05d}", "wb") as f:
            f.write(r.randbytes(r.randint(1024, 64 * 1024)))


def change_one_percent(big, small, seed):
    """1% of the big file in 16 places, and 1% of the small files appended to."""
    r = random.Random(seed)
    size = os.path.getsize(big)
    with open(big, "r+b") as f:
        for _ in range(16):
            f.seek(r.randrange(0, size - size // 1600))
            f.write(r.randbytes(size // 1600))
    for i in r.sample(range(10_000), 100):
        with open(f"{small}/d{i // 500:02d}/f{i:05d}", "ab") as f:
            f.write(r.randbytes(512))


def du(path):
    return int(subprocess.check_output(["du", "-sb", path]).split()[0])


def timed(cmd, env):
    """Runs cmd under /usr/bin/time: (wall s, peak RSS MiB, CPU s, stdout).

    Dirty pages are flushed first, so that neither tool pays for writeback the other left
    behind (scatter's restore ends with a syncfs; restic's does not sync at all)."""
    subprocess.run(["sync"], check=False)
    out = f"{WORK}/time.txt"
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", out, *cmd], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    wall, rss, user, sys_ = open(out).read().split()[-4:]
    return float(wall), int(rss) / 1024, float(user) + float(sys_), p.stdout


class Grid:
    def __init__(self, d):
        self.dir = d
        self.proc = subprocess.Popen([EXE, "dev", "--hosts", "6", "--data-dir", d],
                                     stdout=open(f"{d}.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(600):
            if os.path.exists(f"{d}/env"):
                break
            time.sleep(0.1)
        else:
            self.stop()
            sys.exit(f"the grid did not start; see {d}.log")
        self.env = dict(os.environ)
        for line in open(f"{d}/env"):
            if line.startswith("export "):
                k, v = line[7:].strip().split("=", 1)
                self.env[k] = v.strip("'\"")

    def host_pids(self):
        out = subprocess.run(["pgrep", "-f", f"host --data-dir {self.dir}/host-"], stdout=subprocess.PIPE, text=True)
        return [int(p) for p in out.stdout.split()]

    def host_peak_rss_mib(self):
        peak = 0
        for pid in self.host_pids():
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        return peak

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def can_mount_images():
    """Whether restore targets can be fresh ext4 images: root, mkfs.ext4 and losetup."""
    return os.geteuid() == 0 and shutil.which("mkfs.ext4") and shutil.which("losetup")


FRESH_FS = os.environ.get("BENCH_FRESH_FS", "1") == "1" and can_mount_images()


@contextlib.contextmanager
def fresh_target(target, size):
    """`target` as an empty directory for one restore: on a file system of its own (an ext4
    image on a loop device with direct I/O, so its pages are not cached twice) when possible.

    Restoring into a directory of the shared file system makes each run pay for the inodes
    the runs before it deleted (ext4 searches past them when it allocates new ones), so the
    tool that went second paid for the first one's clean-up."""
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    if not FRESH_FS:
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)
        return
    image = f"{target}.img"
    # Room for the data twice over and ext4's own metadata.
    with open(image, "wb") as f:
        f.truncate(((2 * size >> 20) + 512) << 20)
    subprocess.check_call(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image])
    loop = subprocess.check_output(["losetup", "--direct-io=on", "--show", "-f", image], text=True).strip()
    try:
        subprocess.check_call(["mount", loop, target])
        try:
            yield target
        finally:
            subprocess.run(["umount", target], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        os.unlink(image)
        shutil.rmtree(target, ignore_errors=True)


def same_tree(a, b):
    return subprocess.run(["diff", "-rq", a, b], stdout=subprocess.DEVNULL).returncode == 0


def latest(grid, path):
    out = subprocess.check_output([EXE, "snapshots", "--path", path, "--json"], env=grid.env, text=True)
    return json.loads(out)[-1]["id"]


# Seeded data, generated once.
orig = f"{WORK}/orig"
os.makedirs(f"{orig}/big")
gen_big(f"{orig}/big/file.bin", BIG_MIB, 42)
gen_small(f"{orig}/small", 43)

results = {}   # workload -> {"scatter": [(s, rss, cpu)], "restic": [...]}
uploaded = {}  # workload -> [fraction of the data set newly uploaded by scatter]
host_rss = []


def record(workload, tool, bytes_, measured):
    results.setdefault(workload, {"bytes": bytes_, "scatter": [], "restic": []})[tool].append(measured)


for rnd in range(ROUNDS):
    run = f"{WORK}/run"
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    subprocess.check_call(["cp", "-a", f"{orig}/big", f"{orig}/small", run])
    grid = Grid(f"{WORK}/grid{rnd}")
    renv = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=f"{WORK}/restic{rnd}")
    subprocess.check_call(["restic", "init", "--quiet"], env=renv, stdout=subprocess.DEVNULL)
    tools = ["scatter", "restic"] if rnd % 2 == 0 else ["restic", "scatter"]
    try:
        def backup(workload, path):
            for tool in tools:
                if tool == "scatter":
                    s, rss, cpu, out = timed([EXE, "backup", path, "--json"], grid.env)
                    summary = json.loads(out)
                    uploaded.setdefault(workload, []).append(summary["bytes_new"] / max(1, du(path)))
                else:
                    s, rss, cpu, _ = timed(["restic", "backup", "--quiet", path], renv)
                record(workload, tool, du(path), (s, rss, cpu))

        def restore(workload, path, tag, tools_=None):
            for tool in tools_ or tools:
                with fresh_target(f"{WORK}/restored-{tool}-{tag}", du(path)) as target:
                    if tool == "scatter":
                        m = timed([EXE, "restore", latest(grid, path), "--target", target], grid.env)
                        if not same_tree(path, target + path):
                            sys.exit(f"scatter restored {path} differently")
                    else:
                        m = timed(["restic", "restore", "latest", "--path", path, "--target", target], renv)
                    record(workload, tool, du(path), m[:3])

        backup(f"{BIG_MIB} MiB file, first backup", f"{run}/big")
        backup("10,000 small files, first backup", f"{run}/small")
        host_rss.append(grid.host_peak_rss_mib())
        change_one_percent(f"{run}/big/file.bin", f"{run}/small", 7 + rnd)
        backup(f"{BIG_MIB} MiB file, after 1% changed", f"{run}/big")
        backup("small files, after 1% changed", f"{run}/small")
        restore(f"{BIG_MIB} MiB file, restore", f"{run}/big", "big")
        restore("small files, restore", f"{run}/small", "small")
        for pid in grid.host_pids()[:2]:
            os.kill(pid, signal.SIGKILL)
        restore(f"{BIG_MIB} MiB restore, 2 of 6 hosts down (vs restic healthy)", f"{run}/big", "degraded",
                ["scatter"])
        results[f"{BIG_MIB} MiB restore, 2 of 6 hosts down (vs restic healthy)"]["restic"] = \
            results[f"{BIG_MIB} MiB file, restore"]["restic"]
    finally:
        grid.stop()
        shutil.rmtree(renv["RESTIC_REPOSITORY"], ignore_errors=True)
    print(f"round {rnd + 1}/{ROUNDS} done", file=sys.stderr, flush=True)

huge = None
if HUGE_MIB > 0:
    shutil.rmtree(f"{WORK}/run", ignore_errors=True)
    os.makedirs(f"{WORK}/huge")
    gen_big(f"{WORK}/huge/file.bin", HUGE_MIB, 44)
    grid = Grid(f"{WORK}/grid-huge")
    try:
        b = timed([EXE, "backup", f"{WORK}/huge"], grid.env)
        snap = latest(grid, f"{WORK}/huge")
        os.remove(f"{WORK}/huge/file.bin")
        r = timed([EXE, "restore", snap, "--target", f"{WORK}/huge-restored"], grid.env)
        huge = (b, r)
    finally:
        grid.stop()
        shutil.rmtree(f"{WORK}/huge-restored", ignore_errors=True)

med = statistics.median
print(f"machine: {os.cpu_count()} cores; "
      f"{subprocess.check_output(['restic', 'version'], text=True).split(' compiled')[0]}; "
      f"{ROUNDS} rounds, alternating which tool goes first; medians; restore targets: "
      f"{'a fresh ext4 image each' if FRESH_FS else 'directories of the shared file system'}")
print("| workload | scatter | restic | ratio | scatter RSS | restic RSS | scatter CPU/wall |")
print("|---|---|---|---|---|---|---|")
for w, r in results.items():
    s = [m[0] for m in r["scatter"]]
    t = [m[0] for m in r["restic"]]
    b = r["bytes"]
    cpu = med([m[2] / m[0] for m in r["scatter"]])
    print(f"| {w} | {b / med(s) / MB:.1f} MB/s | {b / med(t) / MB:.1f} MB/s | {med(t) / med(s):.2f}x "
          f"| {max(m[1] for m in r['scatter']):.0f} MiB | {max(m[1] for m in r['restic']):.0f} MiB | {cpu:.2f} |")
for w, f in uploaded.items():
    if "changed" in w:
        print(f"scatter uploaded {100 * med(f):.2f}% of the data set as new chunks for `{w}`")
print(f"host peak RSS during the first backups: {max(host_rss):.0f} MiB (max over 6 hosts and {ROUNDS} rounds)")
if huge:
    (bs, brss, _, _), (rs, rrss, _, _) = huge
    print(f"{HUGE_MIB} MiB file: backup {HUGE_MIB * 1048576 / bs / MB:.1f} MB/s, peak RSS {brss:.0f} MiB; "
          f"restore {HUGE_MIB * 1048576 / rs / MB:.1f} MB/s, peak RSS {rrss:.0f} MiB")
