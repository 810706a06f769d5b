#!/usr/bin/env bash
# Scatter against restic, side by side in one run: a 1 GiB random file, 10,000 small files of
# 1-64 KiB and a copy with 1% changed (all seeded); first backup, incremental backup, restore,
# and restore with 2 of 6 hosts down; then client RSS for an 8 GiB file. Scatter runs a fresh
# local 6-host grid (4+2, TLS) per round, restic a fresh local repository. Prints a table of
# medians over the rounds. A benchmark, not a test.
#
# Usage: bench/compare.sh [ROUNDS=3] [BIG_MIB=1024] [HUGE_MIB=8192]   (HUGE_MIB=0 skips the 8 GiB run)
# Each restore goes to a fresh ext4 image on a loop device when run as root (BENCH_FRESH_FS=0:
# plain directories), so that no run pays for the inodes an earlier one deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} big_mib=${2:-1024} huge_mib=${3:-8192}
need() { command -v "$1" >/dev/null || { sudo -n true 2>/dev/null && s=sudo || s=; $s apt-get update -qq && $s apt-get install -y -qq "$2"; }; }
need /usr/bin/time time
need restic restic
need python3 python3
cargo build --release --quiet
work=$(mktemp -d /tmp/scatter-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 bench/compare.py "$PWD/target/release/scatter" "$work" "$rounds" "$big_mib" "$huge_mib"
