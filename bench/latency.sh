#!/usr/bin/env bash
# A 1 GiB first backup with wide-area round trips between the client and the hosts, against
# the same backup on loopback, in one run. This machine's kernel has no netem, so each host's
# port is redirected (iptables, nat OUTPUT) to bench/delay-proxy, which holds every byte
# DELAY_MS each way (a round trip of twice that) with a 6 MiB window. The proxy costs CPU of
# its own, so the backup also runs through it with no delay: that pair isolates the round
# trips. Each backup runs on a fresh 6-host grid (4+2, TLS); rounds alternate the order.
# Needs root (iptables); installs iptables if missing. A benchmark, not a test.
#
# Usage: bench/latency.sh [ROUNDS=3] [BIG_MIB=1024] [DELAY_MS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} big_mib=${2:-1024} delay_ms=${3:-10}
[ "$(id -u)" = 0 ] || { echo "bench/latency.sh needs root: it redirects the hosts' ports with iptables" >&2; exit 1; }
command -v iptables >/dev/null || { apt-get update -qq && apt-get install -y -qq iptables; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/delay-proxy/Cargo.toml --target-dir "$target/delay-proxy"
work=$(mktemp -d /tmp/scatter-latency.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 bench/latency.py "$target/release/scatter" "$target/delay-proxy/release/delay-proxy" "$work" \
  "$rounds" "$big_mib" "$delay_ms"
