#!/usr/bin/env bash
# Scatter against restic and rustic, side by side in one run: a 1 GiB random file, 10,000 small
# files of 1-64 KiB and a copy with 1% changed (all seeded), and a real tree (`cargo vendor` of
# the crates pinned in bench/real-tree); first backup, incremental backup, restore, and restore
# with 2 of 6 hosts down; then client RSS for an 8 GiB file. Scatter runs a fresh local 6-host
# grid (4+2, TLS) per round, restic and rustic fresh local repositories. Prints a table of
# medians over the rounds, with each tool's CPU-seconds per GiB. A benchmark, not a test.
# Before each timed command, memory as large as the big file is touched and freed (see
# warm_memory in compare.py): on a VM, pages nothing touched before cost far more to fill.
#
# Usage: bench/compare.sh [ROUNDS=3] [BIG_MIB=1024] [HUGE_MIB=8192]   (HUGE_MIB=0 skips the 8 GiB run)
# Each restore goes to a fresh ext4 image on a loop device when run as root (BENCH_FRESH_FS=0:
# plain directories), so that no run pays for the inodes an earlier one deleted.
# rustic is installed with cargo into ~/.cache/scatter-bench the first time (a 10-20 minute
# build on two cores); RUSTIC=/path/to/rustic uses another, BENCH_RUSTIC=0 leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} big_mib=${2:-1024} huge_mib=${3:-8192}
need() { command -v "$1" >/dev/null || { sudo -n true 2>/dev/null && s=sudo || s=; $s apt-get update -qq && $s apt-get install -y -qq "$2"; }; }
need /usr/bin/time time
need restic restic
need python3 python3
rustic_version=0.11.4
rustic=${RUSTIC:-$HOME/.cache/scatter-bench/rustic-$rustic_version/bin/rustic}
if [ "${BENCH_RUSTIC:-1}" != 1 ]; then
  rustic=""
elif [ ! -x "$rustic" ]; then
  echo "installing rustic $rustic_version into $HOME/.cache/scatter-bench (once)" >&2
  cargo install --quiet --locked --no-default-features rustic-rs --version "$rustic_version" \
    --root "$HOME/.cache/scatter-bench/rustic-$rustic_version" || { echo "rustic could not be installed: left out" >&2; rustic=""; }
fi
cargo build --release --quiet
work=$(mktemp -d /tmp/scatter-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 bench/compare.py "${CARGO_TARGET_DIR:-$PWD/target}/release/scatter" "$work" "$rounds" "$big_mib" "$huge_mib" "$rustic" "$PWD/bench/real-tree"
