#!/usr/bin/env bash
# Propagation: SDK watchers, each with its own connection, watch one
# secret on a `keyshift serve` process; 5 rotations are promoted and the
# time from the start of Promote to each watcher holding the new version
# gives p50, p99 and max; the server's memory per idle watcher comes from
# its RSS before and with the watchers connected.
#
#   bench/propagation.sh [WATCHERS] [--http1]   (default 1000,10000; comma-separated)
#
# Each watcher holds one HTTP/2 connection (two HTTP/1.1 ones with
# --http1), so one open file in this process and one in the server's: the
# script raises the soft limit to the hard one, and the run says so when
# that is not enough.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p keyshift -p keyshift-bench
ulimit -n "$(ulimit -Hn)"
"${CARGO_TARGET_DIR:-$PWD/target}/release/propagation" --watchers "${1:-1000,10000}" --rotations 5 "${@:2}"
