#!/usr/bin/env python3
"""Scatter against restic and rustic on the same data, side by side in one run (driven by
compare.sh).

Each round starts a fresh 6-host grid (4+2, TLS, every process on this machine) and fresh
restic and rustic repositories, copies the seeded data sets in, and runs every workload with
every tool, rotating which goes first. It prints medians over the rounds, the throughput ratios
scatter/restic and scatter/rustic, peak RSS of each client, CPU-seconds per GiB of each tool
(all processes of the machine: for scatter the hosts and the coordinator too; scatter's key
file KDF reported apart), and the hosts' peak RSS.
"""

import contextlib
import json
import mmap
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import devgrid

EXE, WORK = sys.argv[1], sys.argv[2]
ROUNDS, BIG_MIB, HUGE_MIB = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# rustic's binary ("" when it could not be installed) and the crate set vendored as the real tree.
RUSTIC, REAL_TREE = sys.argv[6], sys.argv[7]
MB = 1e6
GIB = 1 << 30
TOOLS = ["scatter", "restic"] + (["rustic"] if RUSTIC else [])


def gen_big(path, mib, seed):
    r = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(r.randbytes(1 << 20))


def vendor_real_tree(root):
    """`cargo vendor` of the crate set pinned in bench/real-tree: source, headers, docs and
    test data as projects hold them."""
    subprocess.check_call(["cargo", "vendor", "--quiet", "--locked", "--versioned-dirs",
                           "--manifest-path", f"{REAL_TREE}/Cargo.toml", root], stdout=subprocess.DEVNULL)


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


def machine_cpu():
    """CPU-seconds the whole machine has spent so far (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return sum(int(x) for x in fields[1:4] + fields[6:8]) / os.sysconf("SC_CLK_TCK")


def warm_memory():
    """Touches and frees as much memory as the big file, so that the next command's new pages
    (restic's repository and restores go through the page cache) are ones the machine has used
    before. On a virtual machine whose memory the hypervisor backs lazily, pages nothing
    touched before cost far more: 1 GiB written with dd took 2.6 s of system time into them,
    0.22 s into reused ones. Which tool met them depended on the order of the runs."""
    block = b"\x01" * (BIG_MIB << 20)
    del block


def timed(cmd, env):
    """Runs cmd under /usr/bin/time: (wall s, peak RSS MiB, machine CPU s, stdout, stderr).

    Dirty pages are flushed first, so that no tool pays for writeback another left behind
    (scatter's restore ends with a syncfs; restic's does not sync at all). The CPU is the
    whole machine's: a scatter command's hosts and coordinator work for it."""
    warm_memory()
    subprocess.run(["sync"], check=False)
    out = f"{WORK}/time.txt"
    cpu0 = machine_cpu()
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", out, *cmd], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = machine_cpu() - cpu0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    wall, rss = open(out).read().split()[-4:-2]
    return float(wall), int(rss) / 1024, cpu, p.stdout, p.stderr


KDF = []  # busy seconds of scatter's key file unlock, one per command


def scatter_timed(args, env):
    """A scatter command with --stats: its CPU without the key file's KDF (recorded apart)."""
    wall, rss, cpu, out, err = timed([EXE, "--stats", *args], env)
    kdf = next((float(line.split()[4]) for line in err.splitlines() if line.startswith("unlock key file")), 0.0)
    KDF.append(kdf)
    return wall, rss, cpu - kdf, out


class Grid:
    def __init__(self, d):
        self.dir = d
        self.proc, self.env = devgrid.start(EXE, d)

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


def disk_probe(source, target):
    """What the disk does for the bytes a healthy restore of `source` moves here: reading it
    with direct I/O (as hosts read shards) while writing as many bytes into `target` and
    syncing them (as the restore writes the file). Wall seconds of the two together."""
    size = os.path.getsize(source)
    block = 8 << 20
    buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT wants
    buf.write(os.urandom(block))
    errors = []

    def read():
        try:
            fd = os.open(source, os.O_RDONLY | os.O_DIRECT)
            try:
                view = mmap.mmap(-1, block)
                while os.readv(fd, [view]) > 0:
                    pass
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(e)

    def write():
        try:
            fd = os.open(f"{target}/probe", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                left = size
                while left > 0:
                    left -= os.write(fd, memoryview(buf)[:min(block, left)])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(e)

    subprocess.run(["sync"], check=False)
    start = time.monotonic()
    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"the disk probe failed: {errors[0]}")
    return time.monotonic() - start


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
vendor_real_tree(f"{orig}/real")
real_files = sum(len(files) for _, _, files in os.walk(f"{orig}/real"))

results = {}   # workload -> {"bytes": n, "scatter": [(s, rss, cpu)], "restic": [...], "rustic": [...]}
uploaded = {}  # workload -> [fraction of the data set newly uploaded by scatter]
disk = []      # seconds of the disk probe for the big file, one per round
host_rss = []


def record(workload, tool, bytes_, measured):
    results.setdefault(workload, {"bytes": bytes_, **{t: [] for t in TOOLS}})[tool].append(measured)


def init_repos(rnd):
    """Fresh restic and rustic repositories for round `rnd`: the environment of each tool."""
    envs = {}
    for tool in TOOLS[1:]:
        repo = f"{WORK}/{tool}{rnd}"
        if tool == "restic":
            env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=repo)
            subprocess.check_call(["restic", "init", "--quiet"], env=env, stdout=subprocess.DEVNULL)
        else:
            env = dict(os.environ, RUSTIC_PASSWORD="bench", RUSTIC_REPOSITORY=repo, RUSTIC_NO_PROGRESS="true")
            subprocess.check_call([RUSTIC, "init"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        envs[tool] = (env, repo)
    return envs


for rnd in range(ROUNDS):
    run = f"{WORK}/run"
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    subprocess.check_call(["cp", "-a", f"{orig}/big", f"{orig}/small", f"{orig}/real", run])
    grid = Grid(f"{WORK}/grid{rnd}")
    envs = init_repos(rnd)
    tools = TOOLS[rnd % len(TOOLS):] + TOOLS[:rnd % len(TOOLS)]
    try:
        def backup(workload, path):
            for tool in tools:
                if tool == "scatter":
                    s, rss, cpu, out = scatter_timed(["backup", path, "--json"], grid.env)
                    summary = json.loads(out)
                    uploaded.setdefault(workload, []).append(summary["bytes_new"] / max(1, du(path)))
                elif tool == "restic":
                    s, rss, cpu = timed(["restic", "backup", "--quiet", path], envs[tool][0])[:3]
                else:
                    s, rss, cpu = timed([RUSTIC, "backup", path], envs[tool][0])[:3]
                record(workload, tool, du(path), (s, rss, cpu))

        def restore(workload, path, tag, tools_=None):
            for tool in tools_ or tools:
                with fresh_target(f"{WORK}/restored-{tool}-{tag}", du(path)) as target:
                    if tool == "scatter":
                        m = scatter_timed(["restore", latest(grid, path), "--target", target], grid.env)
                    elif tool == "restic":
                        m = timed(["restic", "restore", "latest", "--path", path, "--target", target], envs[tool][0])
                    else:
                        m = timed([RUSTIC, "restore", "--filter-paths", path, "latest", target], envs[tool][0])
                    if not same_tree(path, target + path):
                        sys.exit(f"{tool} restored {path} differently")
                    record(workload, tool, du(path), m[:3])

        backup(f"{BIG_MIB} MiB file, first backup", f"{run}/big")
        backup("10,000 small files, first backup", f"{run}/small")
        backup(f"real tree ({real_files:,} files), first backup", f"{run}/real")
        host_rss.append(grid.host_peak_rss_mib())
        change_one_percent(f"{run}/big/file.bin", f"{run}/small", 7 + rnd)
        backup(f"{BIG_MIB} MiB file, after 1% changed", f"{run}/big")
        backup("small files, after 1% changed", f"{run}/small")
        restore(f"{BIG_MIB} MiB file, restore", f"{run}/big", "big")
        with fresh_target(f"{WORK}/probe", du(f"{run}/big")) as target:
            disk.append(disk_probe(f"{run}/big/file.bin", target))
        restore("small files, restore", f"{run}/small", "small")
        restore("real tree, restore", f"{run}/real", "real")
        for pid in grid.host_pids()[:2]:
            os.kill(pid, signal.SIGKILL)
        degraded = f"{BIG_MIB} MiB restore, 2 of 6 hosts down (others: healthy)"
        restore(degraded, f"{run}/big", "degraded", ["scatter"])
        for tool in TOOLS[1:]:
            results[degraded][tool] = results[f"{BIG_MIB} MiB file, restore"][tool]
    finally:
        grid.stop()
        for _, repo in envs.values():
            shutil.rmtree(repo, ignore_errors=True)
    print(f"round {rnd + 1}/{ROUNDS} done", file=sys.stderr, flush=True)

huge = None
if HUGE_MIB > 0:
    shutil.rmtree(f"{WORK}/run", ignore_errors=True)
    os.makedirs(f"{WORK}/huge")
    gen_big(f"{WORK}/huge/file.bin", HUGE_MIB, 44)
    grid = Grid(f"{WORK}/grid-huge")
    try:
        b = scatter_timed(["backup", f"{WORK}/huge"], grid.env)
        snap = latest(grid, f"{WORK}/huge")
        os.remove(f"{WORK}/huge/file.bin")
        r = scatter_timed(["restore", snap, "--target", f"{WORK}/huge-restored"], grid.env)
        huge = (b, r)
    finally:
        grid.stop()
        shutil.rmtree(f"{WORK}/huge-restored", ignore_errors=True)

med = statistics.median
versions = [subprocess.check_output(["restic", "version"], text=True).split(" compiled")[0]]
if RUSTIC:
    versions.append(subprocess.check_output([RUSTIC, "--version"], text=True).strip())
print(f"machine: {os.cpu_count()} cores; {'; '.join(versions)}; {ROUNDS} rounds, rotating which tool goes "
      f"first; medians; restore targets: "
      f"{'a fresh ext4 image each' if FRESH_FS else 'directories of the shared file system'}")
others = TOOLS[1:]
print("| workload | " + " | ".join(TOOLS) + " | " + " | ".join(f"vs {t}" for t in others) + " | "
      + " | ".join(f"{t} RSS" for t in TOOLS) + " | " + " | ".join(f"{t} CPU s/GiB" for t in TOOLS) + " |")
print("|---" * (1 + 3 * len(TOOLS) + len(others)) + "|")
for w, r in results.items():
    b = r["bytes"]
    wall = {t: med(m[0] for m in r[t]) for t in TOOLS}
    cells = [f"{b / wall[t] / MB:.1f} MB/s" for t in TOOLS]
    cells += [f"{wall[t] / wall['scatter']:.2f}x" for t in others]
    cells += [f"{max(m[1] for m in r[t]):.0f} MiB" for t in TOOLS]
    cells += [f"{med(m[2] for m in r[t]) / (b / GIB):.2f}" for t in TOOLS]
    print(f"| {w} | " + " | ".join(cells) + " |")
for w, f in uploaded.items():
    if "changed" in w:
        print(f"scatter uploaded {100 * med(f):.2f}% of the data set as new chunks for `{w}`")
print(f"scatter's key file KDF (scrypt), apart from its CPU figures: {med(KDF):.2f} s per command")
big_restore = med(m[0] for m in results[f"{BIG_MIB} MiB file, restore"]["scatter"])
print(f"disk: reading {BIG_MIB} MiB with direct I/O while writing and syncing as much takes {med(disk):.2f} s; "
      f"scatter's {BIG_MIB} MiB restore ({big_restore:.2f} s) runs at {100 * med(disk) / big_restore:.0f}% of that")
print(f"host peak RSS during the first backups: {max(host_rss):.0f} MiB (max over 6 hosts and {ROUNDS} rounds)")
if huge:
    (bs, brss, _, _), (rs, rrss, _, _) = huge
    print(f"{HUGE_MIB} MiB file: backup {HUGE_MIB * 1048576 / bs / MB:.1f} MB/s, peak RSS {brss:.0f} MiB; "
          f"restore {HUGE_MIB * 1048576 / rs / MB:.1f} MB/s, peak RSS {rrss:.0f} MiB")
