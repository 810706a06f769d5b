#!/usr/bin/env bash
# The S3 gateway against the CLI, on one local 6-host grid (4+2, TLS): a random object put and
# got with `aws s3 cp` through `scatter gateway` and with `scatter put` / `scatter get`, MB/s
# for each and the ratio gateway/CLI (target: 0.70 or more), with the CPU seconds of each
# side; then small objects put per second (boto3 in threads) and the time to list a large
# bucket (ListObjectsV2, every page). A benchmark, not a test: run it on a quiet machine.
#
# The gateway is measured twice, side by side in every round: on plain HTTP on loopback (the
# gateway beside the tool, on the machine whose data it is, as the README advises) and on TLS
# (a self-signed certificate). Over TLS, both ends of the connection encrypt on the same two
# cores, which a client on another machine would not share. Then the aws CLI alone is timed
# getting the same objects from nginx (static files from memory, no signatures: a server that
# does next to no work), which bounds what any S3 server could reach here with this client.
# Each put stores bytes of its own: the same bytes again would be deduplicated, and a put
# that finds its chunks stored already uploads nothing.
#
# Usage: bench/s3.sh
# Sizes, by environment variables (defaults in brackets):
#   S3_BENCH_SIZE_MB    the big object, MiB [1024]
#   S3_BENCH_ROUNDS     rounds of the big transfers, new random bytes each [3]
#   S3_BENCH_SMALL      small objects to put [10000] (0: skip)
#   S3_BENCH_SMALL_SIZE bytes of each small object [4096]
#   S3_BENCH_LIST       objects in the bucket that is listed [100000] (0: skip)
#   S3_BENCH_THREADS    boto3 threads for small objects and for filling that bucket [16]
#   S3_BENCH_MODES      the gateways measured: "plain tls", "plain" or "tls" [plain tls]
#   S3_BENCH_CHUNK      the AWS CLI's multipart_chunksize [64MB] (as the README advises)
#   S3_BENCH_CONCURRENCY the AWS CLI's max_concurrent_requests [2]: on two cores, more
#                       requests at once cost the CLI (Python) more CPU than they gain
#   S3_BENCH_NGINX=0    leave out the bound (otherwise nginx is installed when missing)
# Quick check: S3_BENCH_SIZE_MB=64 S3_BENCH_SMALL=500 S3_BENCH_LIST=2000 bench/s3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${S3_BENCH_SIZE_MB:-1024}
small=${S3_BENCH_SMALL:-10000}
small_size=${S3_BENCH_SMALL_SIZE:-4096}
list_n=${S3_BENCH_LIST:-100000}
threads=${S3_BENCH_THREADS:-16}
modes=${S3_BENCH_MODES:-plain tls}
chunk=${S3_BENCH_CHUNK:-64MB}
concurrency=${S3_BENCH_CONCURRENCY:-2}
rounds=${S3_BENCH_ROUNDS:-3}
use_nginx=${S3_BENCH_NGINX:-1}
for m in $modes; do
  case $m in plain | tls) ;; *) echo "S3_BENCH_MODES: unknown mode '$m' (plain, tls)" >&2; exit 2 ;; esac
done
first_mode=${modes%% *}

# The AWS CLI and boto3 (in target/s3-clients), as CI installs them; nginx from Debian.
bash .ci/s3-clients
aws=$PWD/target/s3-clients/bin/aws
python=$PWD/target/s3-clients/bin/python
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ "$use_nginx" = 1 ] && [ ! -x "$nginx" ]; then
  { sudo -n true 2>/dev/null && s=sudo || s=; $s apt-get update -qq && $s apt-get install -y -qq nginx-light >/dev/null; } ||
    { echo "nginx could not be installed: the bound is left out" >&2; use_nginx=0; }
fi
cargo build --release --quiet
exe=$PWD/target/release/scatter

work=$(mktemp -d /tmp/scatter-s3-bench.XXXXXX)
grid_pid="" nginx_pid=""
declare -A gw_pid endpoint
cleanup() {
  for p in $nginx_pid "${gw_pid[@]}" $grid_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
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

# One self-signed certificate, for the TLS gateway and nginx's TLS server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/gw.key" -out "$work/gw.crt" 2>/dev/null
export AWS_CA_BUNDLE=$work/gw.crt
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_listen() { # PORT PID LOG
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 ended:" >&2; cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  echo "nothing listened on port $1 within 30 s; $3:" >&2
  cat "$3" >&2
  exit 1
}
for m in $modes; do
  port=$(free_port)
  if [ "$m" = plain ]; then
    endpoint[$m]=http://127.0.0.1:$port
    "$exe" gateway --listen "127.0.0.1:$port" --plain-http >"$work/gateway-$m.log" 2>&1 &
  else
    endpoint[$m]=https://127.0.0.1:$port
    "$exe" gateway --listen "127.0.0.1:$port" --cert "$work/gw.crt" --key "$work/gw.key" >"$work/gateway-$m.log" 2>&1 &
  fi
  gw_pid[$m]=$!
  wait_listen "$port" "${gw_pid[$m]}" "$work/gateway-$m.log"
done
s3() { local m=$1; shift; "$aws" --endpoint-url "${endpoint[$m]}" "$@"; }
fail() { echo "$1; the gateways' logs:" >&2; tail -30 "$work"/gateway-*.log >&2; exit 1; }

# CPU seconds a process (none: 0) has used so far, user + system.
cpu_of() { if [ -n "$1" ]; then awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; else echo 0; fi; }
timed() { # SERVER-PID ARGS: runs ARGS quietly; prints "wall-seconds client-CPU-seconds server-CPU-seconds"
  local server=$1 g0 g1 t
  shift
  g0=$(cpu_of "$server")
  t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>"$work/timed.err"; } 2>&1 ) || { cat "$work/timed.err" >&2; fail "failed: $*"; }
  g1=$(cpu_of "$server")
  awk -v t="$t" -v a="$g0" -v b="$g1" 'BEGIN { split(t, x, " "); printf "%s %.2f %.2f\n", x[1], x[2] + x[3], b - a }'
}

# Page-cache pages that a write is the first to touch cost far more than the copy on a
# virtual machine whose memory the hypervisor backs lazily (here: 1 GiB written with dd took
# 2.6 s of system time into fresh pages, 0.22 s into pages used before). `scatter get` lets
# its pages go as it writes and reuses them; the aws CLI keeps them, and paid 1.6-3 CPU-s per
# GiB for it in some runs and not in others. Before each timed transfer, as many bytes are
# written and deleted, so that neither pays for the machine's first touch.
bytes=$((size_mib << 20))
warm() { head -c "$bytes" /dev/zero >"$work/warm" && rm -f "$work/warm"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$1" | median; }
peak_rss() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

for m in $modes; do s3 "$m" s3 mb "s3://bench-$m" >/dev/null || fail "aws s3 mb failed ($m)"; done
: >"$work/cli"
for m in $modes; do : >"$work/gw-$m"; done
for r in $(seq 1 "$rounds"); do
  head -c "$bytes" /dev/urandom >"$work/data-cli"
  warm
  read -r put put_cpu _ < <(timed "" "$exe" put "$work/data-cli" --name "bench-cli-$r")
  warm
  read -r get get_cpu _ < <(timed "" "$exe" get "bench-cli-$r" --output "$work/out")
  cmp -s "$work/data-cli" "$work/out" || fail "scatter get gave back different bytes"
  rm -f "$work/out"
  echo "$put $put_cpu $get $get_cpu" >>"$work/cli"
  line="round $r/$rounds: scatter put $put s, get $get s"
  for m in $modes; do
    head -c "$bytes" /dev/urandom >"$work/data-$m"
    warm
    read -r put aws_cpu gw_cpu < <(timed "${gw_pid[$m]}" s3 "$m" s3 cp --only-show-errors "$work/data-$m" "s3://bench-$m/big")
    [ "$r" = 1 ] && [ "$m" = "$first_mode" ] && put_rss=$(peak_rss "${gw_pid[$m]}")
    warm
    read -r get aws_get_cpu gw_get_cpu < <(timed "${gw_pid[$m]}" s3 "$m" s3 cp --only-show-errors "s3://bench-$m/big" "$work/out")
    cmp -s "$work/data-$m" "$work/out" || fail "the gateway ($m) gave back different bytes"
    rm -f "$work/out"
    echo "$put $aws_cpu $gw_cpu $get $aws_get_cpu $gw_get_cpu" >>"$work/gw-$m"
    line="$line; $m gateway: put $put s, get $get s"
  done
  echo "$line" >&2
done

# The bound: the aws CLI getting the last round's objects from nginx, which serves them from
# the page cache (with sendfile on plain HTTP), with no signature to check and nothing to
# decrypt. The same URLs: path-style bucket/key is a directory and a file.
if [ "$use_nginx" = 1 ]; then
  for m in $modes; do mkdir -p "$work/nginx/bench-$m" && ln "$work/data-$m" "$work/nginx/bench-$m/big"; done
  declare -A nginx_url
  nginx_url[plain]=http://127.0.0.1:$(free_port)
  nginx_url[tls]=https://127.0.0.1:$(free_port)
  # As root, nginx's workers would otherwise run as nobody, who may not read this folder.
  user_line=""
  [ "$(id -u)" = 0 ] && user_line="user root;"
  cat >"$work/nginx.conf" <<CONF
daemon off;
$user_line
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx-body;
  server { listen ${nginx_url[plain]#http://}; root $work/nginx; }
  server { listen ${nginx_url[tls]#https://} ssl; ssl_certificate $work/gw.crt; ssl_certificate_key $work/gw.key; root $work/nginx; }
}
CONF
  "$nginx" -c "$work/nginx.conf" -e "$work/nginx.log" >>"$work/nginx.log" 2>&1 &
  nginx_pid=$!
  wait_listen "${nginx_url[plain]##*:}" "$nginx_pid" "$work/nginx.log"
  nginx_worker=""
  for _ in $(seq 1 50); do nginx_worker=$(pgrep -P "$nginx_pid" | head -1 || true); [ -n "$nginx_worker" ] && break; sleep 0.1; done
  for m in $modes; do
    : >"$work/nginx-$m"
    for _ in $(seq 1 "$rounds"); do
      warm
      read -r get aws_cpu ngx_cpu < <(timed "$nginx_worker" "$aws" --no-sign-request --endpoint-url "${nginx_url[$m]}" \
        s3 cp --only-show-errors "s3://bench-$m/big" "$work/out")
      cmp -s "$work/data-$m" "$work/out" || fail "nginx ($m) gave back different bytes"
      rm -f "$work/out"
      echo "$get $aws_cpu $ngx_cpu" >>"$work/nginx-$m"
    done
  done
  kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
fi

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
    # Bytes of its own for every object: the same bytes again would be deduplicated, and a
    # put that finds its chunk stored uploads nothing (that measured 320 objects/s; distinct
    # bytes, about half). The empty objects of the listed bucket have none to upload anyway.
    bodies = [os.urandom(size) for _ in range(n)] if size else None
    def put(i):
        s3.put_object(Bucket=bucket, Key=f"obj/{i // 1000:04d}/{i:07d}", Body=bodies[i] if bodies else b"")
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
many() { ENDPOINT=${endpoint[$first_mode]} "$python" "$work/many.py" "$@" || fail "many.py $* failed"; }
field() { "$python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
if [ "$small" -gt 0 ]; then small_s=$(many put small "$small" "$small_size" "$threads" | field seconds); fi
if [ "$list_n" -gt 0 ]; then
  fill_s=$(many put listing "$list_n" 0 "$threads" | field seconds)
  list_json=$(many list listing "$list_n" 0 0)
  list_s=$(printf '%s' "$list_json" | field seconds)
  list_pages=$(printf '%s' "$list_json" | field pages)
fi
gw_rss=$(peak_rss "${gw_pid[$first_mode]}")

cli_put=$(col "$work/cli" 1) cli_get=$(col "$work/cli" 3)
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "grid: 6 local hosts, 4+2; $("$aws" --version 2>&1); parts of $chunk, $concurrency requests at once"
echo "object: ${size_mib} MiB random; medians of $rounds rounds (each column on its own)"
awk -v b="$bytes" -v p="$cli_put" -v g="$cli_get" -v pc="$(col "$work/cli" 2)" -v gc="$(col "$work/cli" 4)" \
  'BEGIN { printf "scatter CLI: put %.1f MB/s (%.2f s, %s CPU-s), get %.1f MB/s (%.2f s, %s CPU-s)\n", b/1e6/p, p, pc, b/1e6/g, g, gc }'
for m in $modes; do
  [ "$m" = plain ] && what="plain HTTP on loopback" || what="TLS"
  f=$work/gw-$m
  awk -v b="$bytes" -v c="$cli_put" -v t="$(col "$f" 1)" -v a="$(col "$f" 2)" -v s="$(col "$f" 3)" -v w="$what" \
    'BEGIN { printf "gateway, %s: put %.1f MB/s (%.2f s; aws CLI %s + gateway %s CPU-s), ratio %.2f\n", w, b/1e6/t, t, a, s, c/t }'
  awk -v b="$bytes" -v c="$cli_get" -v t="$(col "$f" 4)" -v a="$(col "$f" 5)" -v s="$(col "$f" 6)" -v w="$what" \
    'BEGIN { printf "gateway, %s: get %.1f MB/s (%.2f s; aws CLI %s + gateway %s CPU-s), ratio %.2f\n", w, b/1e6/t, t, a, s, c/t }'
  if [ "$use_nginx" = 1 ]; then
    f=$work/nginx-$m
    awk -v b="$bytes" -v c="$cli_get" -v t="$(col "$f" 1)" -v a="$(col "$f" 2)" -v s="$(col "$f" 3)" \
      'BEGIN { printf "  the aws CLI alone, from nginx: get %.1f MB/s (%.2f s; aws CLI %s + nginx %s CPU-s): at most %.2f for any server\n", b/1e6/t, t, a, s, c/t }'
  fi
done
if [ "$small" -gt 0 ]; then
  awk -v n="$small" -v s="$small_s" -v z="$small_size" -v t="$threads" 'BEGIN { printf "small objects: %d of %d bytes in %.1f s, %.0f objects/s (boto3, %d threads)\n", n, z, s, n/s, t }'
fi
if [ "$list_n" -gt 0 ]; then
  awk -v n="$list_n" -v s="$fill_s" 'BEGIN { printf "filling the listed bucket: %d empty objects in %.1f s, %.0f objects/s\n", n, s, n/s }'
  awk -v n="$list_n" -v s="$list_s" -v p="$list_pages" 'BEGIN { printf "list: %d objects in %d pages (ListObjectsV2) in %.2f s, %.0f objects/s\n", n, p, s, n/s }'
fi
echo "gateway ($first_mode) peak RSS: ${put_rss} MiB after the first big put, ${gw_rss} MiB in all"
