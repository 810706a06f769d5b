#!/usr/bin/env bash
# Puts and gets a 1 GiB random file on a local 6-host grid (4+2), as separate processes, and
# prints MB/s for each and the client's peak RSS. A benchmark, not a test: run it on a quiet
# machine. Usage: bench/put-get.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --quiet
exe=$PWD/target/release/scatter
work=$(mktemp -d /tmp/scatter-bench.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$exe" dev --hosts 6 --data-dir "$work/grid" >"$work/dev.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -f "$work/grid/env" ] && break; sleep 0.1; done
[ -f "$work/grid/env" ] || { echo "the grid did not start; see $work/dev.log" >&2; cat "$work/dev.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/grid/env"

head -c "$((size_mib << 20))" /dev/urandom >"$work/data"
bytes=$(stat -c %s "$work/data")

measure() { # prints "seconds peak_rss_kib"
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
  cat "$work/time"
}
read -r put_s put_rss < <(measure "$exe" put "$work/data" --name bench)
read -r get_s get_rss < <(measure "$exe" get bench --output "$work/out")
cmp -s "$work/data" "$work/out" || { echo "the file came back different" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "file: ${size_mib} MiB random, 4+2 over 6 local hosts"
awk -v b="$bytes" -v s="$put_s" -v r="$put_rss" 'BEGIN { printf "put: %.1f MB/s (%.1f s), client peak RSS %.0f MiB\n", b/1e6/s, s, r/1024 }'
awk -v b="$bytes" -v s="$get_s" -v r="$get_rss" 'BEGIN { printf "get: %.1f MB/s (%.1f s), client peak RSS %.0f MiB\n", b/1e6/s, s, r/1024 }'
