#!/usr/bin/env bash
# The catalog at scale (docs/scale.md): fills a SQLite and a PostgreSQL catalog with 1,000
# simulated hosts and growing numbers of 4+2 packs (10 chunk references and one object
# each), times the coordinator's catalog operations at every size (commit, locate, list,
# heartbeat, placement, the checker's pass, an inventory reconciliation), runs several
# threads at once at the largest size, then measures signed requests per second through 1
# and 3 real `scatter coordinator` processes on the PostgreSQL catalog. Prints one table per
# back end (markdown). A benchmark, not a test: run it on a quiet machine.
#
# Usage: bench/scale.sh [SIZE...]        default: 10000 100000 1000000 (1 M packs, 10 M chunks)
#        bench/scale.sh --quick          a smoke run: 2,000 / 5,000 / 20,000 packs, short samples
# Environment: SCALE_BACKENDS=sqlite,postgres (default both), SCALE_RPS_SECS=10,
#              SCALE_WORK=/tmp (where the catalogs and the PostgreSQL server live; the 1 M
#              step needs about 7 GiB there for SQLite, then 12 GiB for PostgreSQL, one after
#              the other; everything is deleted at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
sizes=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) sizes+=("$arg") ;;
  esac
done
if [ ${#sizes[@]} -eq 0 ]; then
  if [ ${#quick[@]} -gt 0 ]; then sizes=(2000 5000 20000); else sizes=(10000 100000 1000000); fi
fi
rps_secs=${SCALE_RPS_SECS:-10}
if [ ${#quick[@]} -gt 0 ]; then rps_secs=${SCALE_RPS_SECS:-3}; fi

# PostgreSQL's binaries (scatter-pgtest finds them under /usr/lib/postgresql/*/bin).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "PostgreSQL is needed: apt-get install postgresql (or set SCATTER_PG_BIN)" >&2
  exit 1
fi

cargo build --release --quiet -p scatter-cli
cargo build --release --quiet -p scatter-coordinator --features bench --example scale

exec target/release/examples/scale "${quick[@]}" \
  --sizes "$(IFS=,; echo "${sizes[*]}")" \
  --backends "${SCALE_BACKENDS:-sqlite,postgres}" \
  --scatter "$PWD/target/release/scatter" \
  --rps-secs "$rps_secs" \
  --work "${SCALE_WORK:-/tmp}"
