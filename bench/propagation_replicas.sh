#!/usr/bin/env bash
# Propagation across replicas: two `keyshift serve` replicas on one
# PostgreSQL store (a throw-away database on the local server per run,
# dropped at the end); SDK watchers watch the second, rotations run on the
# first, so every change reaches the watchers through the store's
# LISTEN/NOTIFY. Promote to each watcher holding the new version: p50,
# p99, max over 10 rotations.
#
#   bench/propagation_replicas.sh [WATCHERS]      (default 1,1000; comma-separated)
#
# PostgreSQL: PGHOST/PGUSER (default 127.0.0.1, postgres) must be able to
# create a database.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p keyshift -p keyshift-bench
ulimit -n "$(ulimit -Hn)"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
dbs=()
trap 'for db in "${dbs[@]}"; do psql -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres; done' EXIT
IFS=, read -ra counts <<< "${1:-1,1000}"
for n in "${counts[@]}"; do
  db="keyshift_bench_$$_$n"
  dbs+=("$db")
  psql -qc "CREATE DATABASE $db" postgres
  "${CARGO_TARGET_DIR:-$PWD/target}/release/propagation" --watchers "$n" --rotations 10 \
    --store "postgres://$PGUSER@$PGHOST/$db" --across-replicas
  echo
done
