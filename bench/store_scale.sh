#!/usr/bin/env bash
# Scale of the store: 100,000 secrets with 3 versions each, loaded through
# the API, in the embedded SQLite store and in PostgreSQL (a throw-away
# database on the local server, dropped at the end): load time, restart
# time, median and p99 read of a current value through the API, server
# memory. Takes about 10 minutes per store on 2 cores.
#
#   bench/store_scale.sh [SECRETS] [sqlite|postgres|both]    (default 100000 both)
#
# PostgreSQL: PGHOST/PGUSER (default 127.0.0.1, postgres) must be able to
# create a database.
set -euo pipefail
cd "$(dirname "$0")/.."
SECRETS=${1:-100000}
WHICH=${2:-both}
cargo build -q --release -p keyshift -p keyshift-bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

if [ "$WHICH" != postgres ]; then
  "$BIN/store-scale" --secrets "$SECRETS"
  echo
fi
if [ "$WHICH" != sqlite ]; then
  export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
  db="keyshift_bench_$$"
  psql -qc "CREATE DATABASE $db" postgres
  trap 'psql -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres' EXIT
  KEYSHIFT_BENCH_STORE="postgres://$PGUSER@$PGHOST/$db" "$BIN/store-scale" --secrets "$SECRETS"
fi
