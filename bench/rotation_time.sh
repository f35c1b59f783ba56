#!/usr/bin/env bash
# Time of one whole `dual` rotation (Precheck to Done, from the rotation's own
# record) with min_overlap 0, as the median and p95 over N runs, for an
# api-key secret and for a Redis ACL user on the local Redis.
#
#   bench/rotation_time.sh [N]        (default N=20; needs jq and redis-cli)
#
# Builds keyshift in release mode, starts a throw-away server on a free port,
# and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
cargo build -q --release -p keyshift
K=${CARGO_TARGET_DIR:-$PWD/target}/release/keyshift
dir=$(mktemp -d)
user="ks_bench_$$"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  redis-cli ACL DELUSER "$user" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

export KEYSHIFT_TOKEN=$($K init --data-dir "$dir/data" --output json | jq -r .root_token)
$K serve --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/log" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
export KEYSHIFT_ADDR="http://$(sed -n 's/.*listening on //p' "$dir/out")"

# Milliseconds from the rotation's creation to the end of its last phase.
duration_ms() {
  $K rotation show "$1" --output json | jq -r '
    def ms: sub("\\.(?<f>[0-9]+)Z$"; "Z") as $s | ($s | fromdateiso8601) * 1000
            + ((capture("\\.(?<f>[0-9]+)Z$").f // "0") | .[0:3] | tonumber);
    ((.phases | last | .ended_at | ms) - (.created_at | ms))'
}

run() { # name
  local times=()
  for _ in $(seq 1 "$N"); do
    id=$($K rotate "$1" --wait 2>/dev/null)
    times+=("$(duration_ms "$id")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$1" '
    { a[NR]=$1 } END { printf "%-12s runs=%d median=%d ms p95=%d ms max=%d ms\n", name, NR, a[int((NR+1)/2)], a[int(NR*0.95+0.999)], a[NR] }'
}

$K secret put bench/api --kind api-key --generate --min-overlap 0s >/dev/null
redis-cli ACL SETUSER "$user" on ">bench-initial-password" '~*' '+@all' >/dev/null
printf %s bench-initial-password | $K secret put bench/redis --kind redis \
  --target "{\"address\":\"127.0.0.1:6379\",\"user\":\"$user\"}" --min-overlap 0s >/dev/null

echo "dual rotation, min_overlap 0, $N runs each ($(date -u +%FT%TZ), $(nproc) cores)"
run bench/api
run bench/redis
