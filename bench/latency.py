"""Driven by bench/latency.sh: a first backup of a random file on loopback, through the delay
proxy with no delay, through it with DELAY_MS each way to the hosts, and to the hosts and
the coordinator; a fresh grid for each; medians and ratios."""

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

import devgrid

EXE, PROXY, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ROUNDS, BIG_MIB, DELAY_MS = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
MARK = 0x5CA7  # the proxy's own connections: not redirected


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_of(url_file):
    return int(open(url_file).read().strip().rstrip("/").rsplit(":", 1)[1])


class Grid:
    """A fresh `scatter dev` grid of 6 hosts; with `delay` set, each host's port redirected
    through the proxy, and with `coordinator` the client's profile pointed at the proxy in
    front of the coordinator (the hosts' heartbeats, every second in a dev grid, stay on
    loopback: delayed, they make hosts count as late at the coordinator's one-second
    resolution)."""

    def __init__(self, d, delay, coordinator=False):
        self.dir, self.rules, self.proxy = d, [], None
        self.proc, self.env = devgrid.start(EXE, d)
        if delay is None:
            return
        maps = []
        for port in (port_of(f"{d}/host-{i}/url") for i in range(6)):
            listen = free_port()
            maps.append(f"127.0.0.1:{listen}=127.0.0.1:{port}")
            self.rules.append(["-t", "nat", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port),
                               "-m", "mark", "!", "--mark", str(MARK), "-j", "REDIRECT", "--to-ports", str(listen)])
        if coordinator:
            port, listen = port_of(f"{d}/coordinator/url"), free_port()
            maps.append(f"127.0.0.1:{listen}=127.0.0.1:{port}")
            profile = f"{self.env['SCATTER_CONFIG']}/profile.toml"
            text = open(profile).read()
            moved = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{listen}")
            assert moved != text, f"the profile does not name the coordinator: {text}"
            open(profile, "w").write(moved)
        self.proxy = subprocess.Popen([PROXY, str(delay), str(MARK), *maps], stdout=subprocess.PIPE, text=True)
        if self.proxy.stdout.readline().strip() != "ready":
            self.stop()
            sys.exit("the delay proxy did not start")
        for r in self.rules:
            subprocess.run(["iptables", r[0], r[1], "-A", *r[2:]], check=True)

    def stop(self):
        for r in self.rules:
            subprocess.run(["iptables", r[0], r[1], "-D", *r[2:]], check=False)
        for p in (self.proxy, self.proc):
            if p is None:
                continue
            p.send_signal(signal.SIGTERM if p is self.proc else signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def backup(grid, path):
    """Wall seconds of `scatter backup PATH`, without the key file's KDF (--stats)."""
    block = b"\x01" * (BIG_MIB << 20)  # touched and freed: see warm_memory in compare.py
    del block
    subprocess.run(["sync"], check=False)
    t0 = time.monotonic()
    p = subprocess.run([EXE, "--stats", "backup", path], env=grid.env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"the backup failed ({p.returncode}):\n{p.stderr[-2000:]}")
    kdf = next((float(line.split()[4]) for line in p.stderr.splitlines() if line.startswith("unlock key file")), 0.0)
    return wall - kdf


big = f"{WORK}/big.bin"
rng = random.Random(1)
with open(big, "wb") as f:
    for _ in range(BIG_MIB):
        f.write(rng.randbytes(1 << 20))
RTT = f"{2 * DELAY_MS} ms round trips"
modes = {"loopback": (None, False), "proxy, no delay": (0, False), f"proxy, {RTT} to hosts": (DELAY_MS, False),
         f"proxy, {RTT} to hosts and coordinator": (DELAY_MS, True)}
times = {m: [] for m in modes}
for rnd in range(ROUNDS):
    order = list(modes) if rnd % 2 == 0 else list(reversed(modes))
    for mode in order:
        g = Grid(f"{WORK}/grid", *modes[mode])
        try:
            times[mode].append(backup(g, big))
        finally:
            g.stop()
        print(f"round {rnd + 1}: {mode}: {times[mode][-1]:.2f} s", flush=True)

mib = BIG_MIB * (1 << 20) / 1e6
print(f"\n{BIG_MIB} MiB first backup, 6 hosts (4+2, TLS), medians of {ROUNDS} rounds (key file KDF left out):")
med = {m: statistics.median(t) for m, t in times.items()}
for m in modes:
    print(f"  {m:50} {med[m]:6.2f} s  {mib / med[m]:7.1f} MB/s")
for slow in list(modes)[2:]:
    print(f"  {slow}: {med['loopback'] / med[slow]:.2f} of loopback, "
          f"{med['proxy, no delay'] / med[slow]:.2f} of the proxy alone")
