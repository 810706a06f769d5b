#!/usr/bin/env bash
# The S3 gateway against the CLI, on one local 6-host grid (4+2, TLS): a random file put and
# got with `aws s3 cp` through `scatter gateway` (over TLS with a self-signed certificate) and
# with `scatter put` / `scatter get`, MB/s for each and the ratio gateway/CLI (target: 0.70 or
# more), with the CPU seconds of each side (the AWS CLI is Python: on a small machine it takes
# a share of the cores); then small objects put per second (boto3 in threads) and the time
# to list a large bucket (ListObjectsV2, every page). A benchmark, not a test: run it on a
# quiet machine.
#
# Usage: bench/s3.sh
# Sizes, by environment variables (defaults in brackets):
#   S3_BENCH_SIZE_MB    the big object, MiB [1024]
#   S3_BENCH_ROUNDS     rounds of the four big transfers, new random bytes each [3]
#   S3_BENCH_SMALL      small objects to put [10000] (0: skip)
#   S3_BENCH_SMALL_SIZE bytes of each small object [4096]
#   S3_BENCH_LIST       objects in the bucket that is listed [100000] (0: skip)
#   S3_BENCH_THREADS    boto3 threads for small objects and for filling that bucket [16]
#   S3_BENCH_PLAIN=1    the gateway on plain HTTP instead of TLS
#   S3_BENCH_CHUNK      the AWS CLI's multipart_chunksize [8MB] (the README advises 64MB)
#   S3_BENCH_CONCURRENCY the AWS CLI's max_concurrent_requests [10]
# Quick check: S3_BENCH_SIZE_MB=64 S3_BENCH_SMALL=500 S3_BENCH_LIST=2000 bench/s3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${S3_BENCH_SIZE_MB:-1024}
small=${S3_BENCH_SMALL:-10000}
small_size=${S3_BENCH_SMALL_SIZE:-4096}
list_n=${S3_BENCH_LIST:-100000}
threads=${S3_BENCH_THREADS:-16}
plain=${S3_BENCH_PLAIN:-0}
chunk=${S3_BENCH_CHUNK:-8MB}
concurrency=${S3_BENCH_CONCURRENCY:-10}

# The AWS CLI and boto3 (in target/s3-clients), as CI installs them.
bash .ci/s3-clients
aws=$PWD/target/s3-clients/bin/aws
python=$PWD/target/s3-clients/bin/python
cargo build --release --quiet
exe=$PWD/target/release/scatter

work=$(mktemp -d /tmp/scatter-s3-bench.XXXXXX)
grid_pid="" gw_pid=""
cleanup() {
  for p in $gw_pid $grid_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$exe" dev --hosts 6 --data-dir "$work/grid" >"$work/dev.log" 2>&1 &
grid_pid=$!
for _ in $(seq 1 300); do [ -f "$work/grid/env" ] && break; sleep 0.1; done
[ -f "$work/grid/env" ] || { echo "the grid did not start; see $work/dev.log" >&2; cat "$work/dev.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/grid/env"

# Only this script's S3 settings: none of the caller's AWS_* variables.
for v in $(env | grep -o '^AWS_[A-Za-z0-9_]*' || true); do unset "$v"; done
key_json=$("$exe" gateway key add --json)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
AWS_ACCESS_KEY_ID=$(printf '%s' "$key_json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["access_key"])')
AWS_SECRET_ACCESS_KEY=$(printf '%s' "$key_json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=$work/aws-config AWS_SHARED_CREDENTIALS_FILE=$work/none
export AWS_EC2_METADATA_DISABLED=true NO_PROXY=127.0.0.1
printf '[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n    multipart_chunksize = %s\n    max_concurrent_requests = %s\n' "$chunk" "$concurrency" >"$AWS_CONFIG_FILE"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$plain" = 1 ]; then
  endpoint=http://127.0.0.1:$port
  "$exe" gateway --listen "127.0.0.1:$port" --plain-http >"$work/gateway.log" 2>&1 &
else
  endpoint=https://127.0.0.1:$port
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/gw.key" -out "$work/gw.crt" 2>/dev/null
  export AWS_CA_BUNDLE=$work/gw.crt
  "$exe" gateway --listen "127.0.0.1:$port" --cert "$work/gw.crt" --key "$work/gw.key" >"$work/gateway.log" 2>&1 &
fi
gw_pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$gw_pid" 2>/dev/null || { echo "the gateway exited:" >&2; cat "$work/gateway.log" >&2; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "the gateway did not listen within 30 s:" >&2; cat "$work/gateway.log" >&2; exit 1; }
s3() { "$aws" --endpoint-url "$endpoint" "$@"; }
fail() { echo "$1; the gateway's log:" >&2; tail -50 "$work/gateway.log" >&2; exit 1; }

# CPU seconds the gateway has used so far (user + system).
gw_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$gw_pid/stat"; }
timed() { # runs ARGS quietly; prints "wall-seconds client-cpu-seconds gateway-cpu-seconds"
  local g0 g1 t
  g0=$(gw_cpu)
  t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>"$work/timed.err"; } 2>&1 ) || { cat "$work/timed.err" >&2; fail "failed: $*"; }
  g1=$(gw_cpu)
  awk -v t="$t" -v a="$g0" -v b="$g1" 'BEGIN { split(t, x, " "); printf "%s %.2f %.2f\n", x[1], x[2] + x[3], b - a }'
}

# Page-cache pages that a write is the first to touch cost far more than the copy on a
# virtual machine whose memory the hypervisor backs lazily (here: 1 GiB written with dd took
# 2.6 s of system time into fresh pages, 0.22 s into pages used before). `scatter get` lets
# its pages go as it writes and reuses them; the aws CLI keeps them, and paid 1.6-3 CPU-s per
# GiB for it in some runs and not in others. Before each timed transfer, as many bytes are
# written and deleted, so that neither pays for the machine's first touch.
warm() { head -c "$bytes" /dev/zero >"$work/warm" && rm -f "$work/warm"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

s3 s3 mb s3://bench >/dev/null || fail "aws s3 mb failed"
rounds=${S3_BENCH_ROUNDS:-3}
peak_rss() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$gw_pid/status"; }
: >"$work/rounds"
for r in $(seq 1 "$rounds"); do
  # New bytes every round: the same ones again would be deduplicated.
  head -c "$((size_mib << 20))" /dev/urandom >"$work/data"
  bytes=$(stat -c %s "$work/data")
  warm
  read -r cli_put cli_put_cpu _ < <(timed "$exe" put "$work/data" --name "bench-cli-$r")
  warm
  read -r cli_get cli_get_cpu _ < <(timed "$exe" get "bench-cli-$r" --output "$work/out-cli")
  cmp -s "$work/data" "$work/out-cli" || fail "scatter get gave back different bytes"
  rm -f "$work/out-cli"
  warm
  read -r gw_put aws_put_cpu gw_put_cpu < <(timed s3 s3 cp --only-show-errors "$work/data" "s3://bench/big-$r")
  [ "$r" = 1 ] && put_rss=$(peak_rss)
  warm
  read -r gw_get aws_get_cpu gw_get_cpu < <(timed s3 s3 cp --only-show-errors "s3://bench/big-$r" "$work/out-gw")
  cmp -s "$work/data" "$work/out-gw" || fail "the gateway gave back different bytes"
  rm -f "$work/out-gw"
  echo "$cli_put $cli_put_cpu $cli_get $cli_get_cpu $gw_put $aws_put_cpu $gw_put_cpu $gw_get $aws_get_cpu $gw_get_cpu" >>"$work/rounds"
  echo "round $r/$rounds: put $cli_put s (CLI) / $gw_put s (gateway), get $cli_get s / $gw_get s" >&2
done
col() { awk -v c="$1" '{ print $c }' "$work/rounds" | median; }
cli_put=$(col 1) cli_put_cpu=$(col 2) cli_get=$(col 3) cli_get_cpu=$(col 4)
gw_put=$(col 5) aws_put_cpu=$(col 6) gw_put_cpu=$(col 7) gw_get=$(col 8) aws_get_cpu=$(col 9) gw_get_cpu=$(col 10)

# Small objects, then a bucket of many (empty) objects listed page by page, with boto3.
cat >"$work/many.py" <<'PY'
import concurrent.futures, json, os, sys, time
import boto3
from botocore.config import Config

mode, bucket, n, size, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = Config(s3={"addressing_style": "path"}, max_pool_connections=threads * 2, retries={"max_attempts": 1, "mode": "standard"})
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], config=cfg)
if mode == "put":
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(size)
    def put(i):
        s3.put_object(Bucket=bucket, Key=f"obj/{i // 1000:04d}/{i:07d}", Body=body)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(put, range(n)):
            pass
    print(json.dumps({"seconds": time.monotonic() - t0}))
else:
    t0, count, pages, token = time.monotonic(), 0, 0, None
    while True:
        r = s3.list_objects_v2(Bucket=bucket, **({"ContinuationToken": token} if token else {}))
        count += r.get("KeyCount", 0)
        pages += 1
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert count == n, f"listed {count} objects, expected {n}"
    print(json.dumps({"seconds": time.monotonic() - t0, "pages": pages}))
PY
many() { ENDPOINT=$endpoint "$python" "$work/many.py" "$@" || fail "many.py $* failed"; }
field() { "$python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
if [ "$small" -gt 0 ]; then small_s=$(many put small "$small" "$small_size" "$threads" | field seconds); fi
if [ "$list_n" -gt 0 ]; then
  fill_s=$(many put listing "$list_n" 0 "$threads" | field seconds)
  list_json=$(many list listing "$list_n" 0 0)
  list_s=$(printf '%s' "$list_json" | field seconds)
  list_pages=$(printf '%s' "$list_json" | field pages)
fi
gw_rss=$(peak_rss)

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "grid: 6 local hosts, 4+2; gateway on $endpoint; $("$aws" --version 2>&1)"
echo "object: ${size_mib} MiB random; medians of $rounds rounds (each column on its own)"
awk -v b="$bytes" -v c="$cli_put" -v g="$gw_put" 'BEGIN { printf "put: scatter put %.1f MB/s (%.1f s), gateway aws s3 cp %.1f MB/s (%.1f s), ratio %.2f\n", b/1e6/c, c, b/1e6/g, g, c/g }'
awk -v b="$bytes" -v c="$cli_get" -v g="$gw_get" 'BEGIN { printf "get: scatter get %.1f MB/s (%.1f s), gateway aws s3 cp %.1f MB/s (%.1f s), ratio %.2f\n", b/1e6/c, c, b/1e6/g, g, c/g }'
echo "  CPU seconds, put: scatter put $cli_put_cpu; aws CLI $aws_put_cpu + gateway $gw_put_cpu"
echo "  CPU seconds, get: scatter get $cli_get_cpu; aws CLI $aws_get_cpu + gateway $gw_get_cpu"
if [ "$small" -gt 0 ]; then
  awk -v n="$small" -v s="$small_s" -v z="$small_size" -v t="$threads" 'BEGIN { printf "small objects: %d of %d bytes in %.1f s, %.0f objects/s (boto3, %d threads)\n", n, z, s, n/s, t }'
fi
if [ "$list_n" -gt 0 ]; then
  awk -v n="$list_n" -v s="$fill_s" 'BEGIN { printf "filling the listed bucket: %d empty objects in %.1f s, %.0f objects/s\n", n, s, n/s }'
  awk -v n="$list_n" -v s="$list_s" -v p="$list_pages" 'BEGIN { printf "list: %d objects in %d pages (ListObjectsV2) in %.2f s, %.0f objects/s\n", n, p, s, n/s }'
fi
echo "gateway peak RSS: ${put_rss} MiB after the big put, ${gw_rss} MiB in all"
