#!/usr/bin/env bash
# Time of one whole `dual` rotation (Precheck to Done, from the rotation's own
# record) with min_overlap 0, as the median and p95 over N runs, for an
# api-key secret and for a Redis ACL user on the local Redis.
#
#   bench/rotation_time.sh [N]        (default N=20; needs redis-cli)
#
# Builds keyshift in release mode, starts a throw-away server on a free port
# (bench/lib.sh), and stops it at the end.
source "$(dirname "$0")/lib.sh"
N=${1:-20}
command -v redis-cli >/dev/null || { echo "needs redis-cli" >&2; exit 1; }
user="ks_bench_$$"
trap 'redis-cli ACL DELUSER "$user" >/dev/null 2>&1 || true; bench_cleanup' EXIT
start_keyshift

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
