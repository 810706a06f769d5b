#!/usr/bin/env bash
# Scatter backup/restore against restic on the same data, side by side in one run:
#   - one 1 GiB random file; 10,000 small files of 1-64 KiB (seeded);
#   - first backup, incremental backup after 1% changed, restore of the latest snapshot.
# Scatter backs up to a local 6-host grid (4+2, every process on this machine); restic to a
# local repository. Prints seconds, MB/s, peak RSS and the ratio scatter/restic (throughput,
# higher is better for scatter). A benchmark, not a test. Usage: bench/backup-vs-restic.sh [BIG_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
big_mib=${1:-1024}
need() { command -v "$1" >/dev/null || { sudo -n true 2>/dev/null && s=sudo || s=; $s apt-get update -qq && $s apt-get install -y -qq "$2"; }; }
need /usr/bin/time time
need restic restic
need python3 python3
cargo build --release --quiet
exe=$PWD/target/release/scatter
work=$(mktemp -d /tmp/scatter-vs-restic.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$exe" dev --hosts 6 --data-dir "$work/grid" >"$work/dev.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -f "$work/grid/env" ] && break; sleep 0.1; done
[ -f "$work/grid/env" ] || { echo "the grid did not start; see $work/dev.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/grid/env"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$work/restic
restic init --quiet >/dev/null

python3 - "$work" "$big_mib" <<'PY'
import os, random, sys
work, big = sys.argv[1], int(sys.argv[2])
r = random.Random(42)
os.makedirs(f"{work}/big"); os.makedirs(f"{work}/small")
with open(f"{work}/big/file.bin", "wb") as f:
    for _ in range(big):
        f.write(r.randbytes(1 << 20))
for i in range(10000):
    d = f"{work}/small/d{i // 500:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(r.randbytes(r.randint(1024, 64 * 1024)))
PY

change_one_percent() {
  python3 - "$work" "$big_mib" <<'PY'
import os, random, sys
work, big = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
with open(f"{work}/big/file.bin", "r+b") as f:  # 1% of the big file, in 16 places
    for k in range(16):
        f.seek(r.randrange(0, big << 20)); f.write(r.randbytes((big << 20) // 1600))
for i in r.sample(range(10000), 100):           # 1% of the small files
    with open(f"{work}/small/d{i // 500:02d}/f{i:05d}", "ab") as f:
        f.write(r.randbytes(512))
PY
}

measure() { # runs a command; prints "seconds peak_rss_kib"
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  cat "$work/time"
}
size_of() { du -sb "$1" | cut -f1; }
rows=()
row() { # workload bytes scatter_s scatter_rss restic_s restic_rss
  rows+=("$(awk -v w="$1" -v b="$2" -v s="$3" -v sr="$4" -v r="$5" -v rr="$6" 'BEGIN {
    printf "| %-28s | %7.1f MB/s | %7.1f MB/s | %5.2fx | %5.0f MiB | %5.0f MiB |", w, b/1e6/s, b/1e6/r, r/s, sr/1024, rr/1024 }')")
}
for set in big small; do
  bytes=$(size_of "$work/$set")
  read -r ss srss < <(measure "$exe" backup "$work/$set")
  read -r rs rrss < <(measure restic backup --quiet "$work/$set")
  row "$set: first backup" "$bytes" "$ss" "$srss" "$rs" "$rrss"
done
change_one_percent
for set in big small; do
  bytes=$(size_of "$work/$set")
  read -r ss srss < <(measure "$exe" backup "$work/$set")
  read -r rs rrss < <(measure restic backup --quiet "$work/$set")
  row "$set: backup after 1% change" "$bytes" "$ss" "$srss" "$rs" "$rrss"
done
for set in big small; do
  bytes=$(size_of "$work/$set")
  id=$("$exe" snapshots --path "$work/$set" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  read -r ss srss < <(measure "$exe" restore "$id" --target "$work/rs-$set")
  read -r rs rrss < <(measure restic restore latest --path "$work/$set" --target "$work/rr-$set")
  diff -rq "$work/$set" "$work/rs-$set$work/$set" >/dev/null || { echo "scatter restored $set differently" >&2; exit 1; }
  rm -rf "$work/rs-$set" "$work/rr-$set"
  row "$set: restore" "$bytes" "$ss" "$srss" "$rs" "$rrss"
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(restic version | head -1)"
echo "data: ${big_mib} MiB random file; 10,000 files of 1-64 KiB; scatter 4+2 over 6 local hosts, restic local repo"
echo "| workload                     |  scatter     |  restic      | ratio  | scatter RSS | restic RSS |"
echo "|------------------------------|--------------|--------------|--------|-------------|------------|"
printf '%s\n' "${rows[@]}"
