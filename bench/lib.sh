# Shared by the bench/ scripts: build keyshift in release mode, run a
# throw-away server, pick free ports. Source it; it sets K (the binary) and
# WORK (a temporary directory removed on exit, with the servers it started).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash bench/setup.sh
cargo build -q --release -p keyshift
K=${CARGO_TARGET_DIR:-$PWD/target}/release/keyshift
WORK=$(mktemp -d)
PIDS=()
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts `keyshift serve` on a fresh data dir ($WORK/data), sets
# KEYSHIFT_TOKEN, KEYSHIFT_ADDR and SERVER_PID. Extra arguments go to serve.
start_keyshift() {
  KEYSHIFT_TOKEN=$($K init --data-dir "$WORK/data" --output json | jq -r .root_token)
  export KEYSHIFT_TOKEN
  $K serve --data-dir "$WORK/data" --listen 127.0.0.1:0 "$@" >"$WORK/serve.out" 2>"$WORK/serve.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 200); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.05; done
  KEYSHIFT_ADDR="http://$(sed -n 's/.*listening on //p' "$WORK/serve.out" | head -n1)"
  export KEYSHIFT_ADDR
}

# One line about the machine, for BENCHMARKS.md.
machine() {
  echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)"
}
