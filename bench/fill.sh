#!/usr/bin/env bash
# How full a grid gets before a put is refused: the placement before placement by fit
# (weighted random by free space, one shard per host) against placement by fit (the
# durability rule's limits, roomiest first), on 7 unequal hosts (32..256 MiB), on 3 and 4
# hosts, and on two more mixes. A simulation of the coordinator's own placement code
# (crates/scatter-coordinator/examples/fill.rs); the same grid of real processes is filled
# by the `unequal_hosts_fill_to_the_rules_bound` test. A benchmark, not a test.
#
# Usage: bench/fill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p scatter-coordinator --example fill
