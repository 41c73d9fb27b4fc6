#!/usr/bin/env bash
# Connection benchmark of docs/BENCHMARKS.md: server RSS per idle Socket.IO WebSocket client at
# 1k/5k/10k/15k connections, fan-out of one pre-encoded frame to 10k connections, heartbeat CPU
# of 15k idle connections over 60 s. Release build; server and clients in separate processes.
#   crates/sio/bench/conn-bench.sh [stages] [fanout-at] [idle-secs]
set -euo pipefail
cd "$(dirname "$0")/../../.."
STAGES=${1:-1000,5000,10000,15000}
FANOUT_AT=${2:-10000}
IDLE_SECS=${3:-60}
cargo build --quiet --release -p sio --example bench_server --example bench_clients
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ulimit -n 20000
OUT=$(mktemp)
"$TARGET_DIR/release/examples/bench_server" >"$OUT" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 50); do grep -q '^PORT=' "$OUT" && break; sleep 0.1; done
PORT=$(sed -n 's/^PORT=//p' "$OUT")
"$TARGET_DIR/release/examples/bench_clients" "$PORT" "$SERVER" "$STAGES" "$FANOUT_AT" "$IDLE_SECS"
