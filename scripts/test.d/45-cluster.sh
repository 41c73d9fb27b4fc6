#!/usr/bin/env bash
# The same product on a Redis Cluster (3 masters + 3 replicas, scripts/dev/redis-cluster.sh): the Rust
# suites that drive Redis (bus, realtime, API, worker) and the gateway end-to-end files, with
# CHAT_TEST_REDIS_URL=redis+cluster://…, so SPUBLISH/SSUBSCRIBE, WAIT 1, per-shard streams and the
# cluster-aware presence are what they exercise; then the cluster-only scenarios of
# services/gateway/tests/js/cluster.test.mjs: rooms spread over the masters, and a master killed with
# SIGKILL mid-traffic (no acknowledged message lost or doubled, seq gap-free, the node restarted after).
# Starts the cluster when it is not running and stops it at the end only if it started it.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=services/gateway/tests
CLUSTER=scripts/dev/redis-cluster.sh

if ! command -v redis-server >/dev/null 2>&1; then
  echo "45-cluster: redis-server is missing (scripts/deps.sh installs it)" >&2
  exit 1
fi
port=${REDIS_CLUSTER_PORT:-7000}
started=0
if ! redis-cli -p "$port" cluster info 2>/dev/null | grep -q cluster_state:ok; then started=1; fi
url=$(bash "$CLUSTER" up)
LOG=$(mktemp)
cleanup() {
  rm -f "$LOG"
  if [ "$started" = 1 ]; then bash "$CLUSTER" down; fi
}
trap cleanup EXIT
echo "-- on $url"
export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}"
export CHAT_TEST_REDIS_URL=$url
export REDIS_CLUSTER_PORT=$port

echo "-- Rust suites that use Redis"
if ! cargo test --locked -p chat-bus -p chat-realtime -p chat-api -p chat-worker >"$LOG" 2>&1; then
  grep -vE '^test .* \.\.\. ok$' "$LOG" | tail -150 >&2
  echo "45-cluster: a Rust suite failed on the cluster" >&2
  exit 1
fi
grep -E '^test result' "$LOG"

cargo build --quiet --locked -p chat-api -p chat-gateway -p chat-worker
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export CHAT_API_BIN="$TARGET_DIR/debug/chat-api"
export CHAT_GATEWAY_BIN="$TARGET_DIR/debug/chat-gateway"
export CHAT_WORKER_BIN="$TARGET_DIR/debug/chat-worker"
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)

echo "-- gateway end-to-end on the cluster (socket.io-client)"
timeout 600 node --test --test-concurrency=1 \
  "$DIR/js/messaging.test.mjs" "$DIR/js/recovery.test.mjs" "$DIR/js/presence.test.mjs" \
  "$DIR/js/history.test.mjs" "$DIR/js/catchup.test.mjs" "$DIR/js/access.test.mjs" \
  "$DIR/js/cluster.test.mjs"
echo "cluster: ok"
