#!/usr/bin/env bash
# Trees of many small files: backs up and restores trees of 10,000, 100,000 and 1,000,000
# files (100-600 random bytes each, 1,000 per directory) on a local 6-host grid (4+2, TLS),
# and prints the client's wall time and peak RSS for each (issue 21's target: a 1-million-file
# tree backs up and restores within 512 MiB). Each restore is checked file by file. A
# benchmark, not a test: the 1 M step needs about 2.5 GiB of disk and 2.1 M free inodes, and
# takes several minutes.
#
# Usage: bench/many-files.sh [COUNT...]        default: 10000 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(10000 100000 1000000)
command -v /usr/bin/time >/dev/null || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }
cargo build --release --quiet
exe=${CARGO_TARGET_DIR:-$PWD/target}/release/scatter

work=$(mktemp -d /tmp/scatter-many.XXXXXX)
grid_pid=""
cleanup() {
  if [ -n "$grid_pid" ]; then kill "$grid_pid" 2>/dev/null && wait "$grid_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

largest=$(printf '%s\n' "${counts[@]}" | sort -n | tail -1)
free_inodes=$(df --output=iavail "$work" | tail -1 | tr -d ' ')
if [ "$free_inodes" -lt $((2 * largest + 100000)) ]; then
  echo "$work's file system has $free_inodes free inodes; $((2 * largest)) are needed" >&2
  exit 1
fi

"$exe" dev --hosts 6 --data-dir "$work/grid" >"$work/dev.log" 2>&1 &
grid_pid=$!
for _ in $(seq 1 300); do [ -f "$work/grid/env" ] && break; sleep 0.1; done
[ -f "$work/grid/env" ] || { echo "the grid did not start; see $work/dev.log" >&2; cat "$work/dev.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/grid/env"

# Runs ARGS; prints "wall-seconds peak-RSS-MiB". Dirty pages are flushed first: the restore
# ends with a syncfs, which would otherwise write back the freshly generated source too.
measure() {
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "failed: $*" >&2; tail -20 "$work/err" >&2; exit 1
  }
  awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$work/time"
}

echo "| files | data | backup | backup peak RSS | restore | restore peak RSS |"
echo "|---|---|---|---|---|---|"
for n in "${counts[@]}"; do
  src=$work/src-$n dst=$work/dst-$n
  python3 - "$src" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(n)
for i in range(n):
    d = f"{root}/d{i // 1000:04d}"
    if i % 1000 == 0:
        os.makedirs(d)
    with open(f"{d}/f{i:07d}", "wb") as f:
        f.write(r.randbytes(r.randint(100, 600)))
PY
  bytes=$(du -sb "$src" | cut -f1)
  read -r b_s b_rss < <(measure "$exe" backup "$src")
  snap=$("$exe" snapshots --path "$src" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  read -r r_s r_rss < <(measure "$exe" restore "$snap" --target "$dst")
  diff -rq "$src" "$dst$src" >/dev/null || { echo "the restore of $n files differs from its source" >&2; exit 1; }
  printf '| %s | %s MB | %s s | %s MiB | %s s | %s MiB |\n' "$n" "$((bytes / 1000000))" "$b_s" "$b_rss" "$r_s" "$r_rss"
  rm -rf "$src" "$dst"
done
