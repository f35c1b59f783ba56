#!/usr/bin/env bash
# Read throughput: wrk against keyshift's GET of a secret's current value
# (authenticated, keep-alive) beside nginx serving a static file of the same
# size, on the same machine, with the same wrk settings, in one run.
#
#   bench/read_throughput.sh [DURATION] [CONNECTIONS] [ROUNDS]   (default 10s 64 3)
#
# Runs nginx and keyshift in turn ROUNDS times and prints the medians of
# requests/s and p50/p99 latency of both, and keyshift's share of nginx's
# requests/s (goal: at least 0.5). Installs wrk and nginx through
# bench/setup.sh. The token reaches wrk through its environment, never argv.
source "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
CONNECTIONS=${2:-64}
ROUNDS=${3:-3}
THREADS=2

start_keyshift
$K secret put bench/read --kind api-key --generate >/dev/null
URL="$KEYSHIFT_ADDR/v1/secrets/bench/read:value"
printf 'Authorization: Bearer %s\n' "$KEYSHIFT_TOKEN" >"$WORK/auth"
curl -sf -H @"$WORK/auth" "$URL" >"$WORK/body"
SIZE=$(wc -c <"$WORK/body")

# nginx: the same bytes as a static file, on its own port.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/www" "$WORK/nginx"
head -c "$SIZE" /dev/urandom | base64 -w0 | head -c "$SIZE" >"$WORK/www/value.json"
chmod -R a+rX "$WORK"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  default_type application/json;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
  }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
for _ in $(seq 1 100); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.05; done
PIDS+=("$(cat "$WORK/nginx/nginx.pid")")
curl -sf "http://127.0.0.1:$NGINX_PORT/value.json" >/dev/null

cat >"$WORK/auth.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEYSHIFT_TOKEN")
LUA

# Milliseconds from wrk's "1.23ms" / "456.00us" / "1.02s".
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 } }'
}

run() { # name url
  local out="$WORK/wrk-$1.txt"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/auth.lua" "$2" >"$out"
  if grep -q "Non-2xx" "$out"; then
    echo "$1: non-2xx answers:" >&2; cat "$out" >&2; exit 1
  fi
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
}

# Both warm up, then ROUNDS alternating runs of each; the medians count.
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$NGINX_PORT/value.json" >/dev/null
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$WORK/auth.lua" "$URL" >/dev/null
: >"$WORK/nginx.runs"; : >"$WORK/keyshift.runs"
for round in $(seq 1 "$ROUNDS"); do
  run nginx "http://127.0.0.1:$NGINX_PORT/value.json"
  echo "$RPS $P50 $P99" >>"$WORK/nginx.runs"
  run keyshift "$URL"
  echo "$RPS $P50 $P99" >>"$WORK/keyshift.runs"
  echo "round $round: nginx $(tail -n1 "$WORK/nginx.runs"), keyshift $(tail -n1 "$WORK/keyshift.runs") (requests/s p50 p99)" >&2
done

# The median of column $2 of file $1.
median() { sort -g -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'; }

N_RPS=$(median "$WORK/nginx.runs" 1) N_P50=$(median "$WORK/nginx.runs" 2) N_P99=$(median "$WORK/nginx.runs" 3)
K_RPS=$(median "$WORK/keyshift.runs" 1) K_P50=$(median "$WORK/keyshift.runs" 2) K_P99=$(median "$WORK/keyshift.runs" 3)
RATIO=$(awk -v k="$K_RPS" -v n="$N_RPS" 'BEGIN { printf "%.2f", k / n }')
echo "read throughput, $(date -u +%Y-%m-%d), $(machine)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, body $SIZE bytes, median of $ROUNDS alternating runs"
echo
echo "| server | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
printf '| nginx %s (static file) | %.0f | %.2f | %.2f |\n' "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$N_RPS" "$N_P50" "$N_P99"
printf '| keyshift (GET :value, bearer token) | %.0f | %.2f | %.2f |\n' "$K_RPS" "$K_P50" "$K_P99"
echo
echo "keyshift / nginx requests/s: $RATIO (goal: at least 0.50)"
