#!/usr/bin/env bash
# End-to-end tests of the gateway against real processes: MariaDB and Redis on loopback, the API, two
# gateways (plus a third for the slow-client test), the persistence worker, and a TCP load balancer in
# front of the gateways, driven by the stock npm `socket.io-client` (node --test) and a python-socketio
# client. Each test file (services/gateway/tests/js/*.test.mjs) starts its own stack on free ports
# with a fresh `chat_test_gw_*` database and Redis prefix, and removes them at the end.
# Installs what it needs: npm packages in services/gateway/tests/node_modules, a venv in target/
# (shared with 20-sio-interop.sh: same requirement).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=services/gateway/tests

cargo build --quiet --locked -p chat-api -p chat-gateway -p chat-worker
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export CHAT_API_BIN="$TARGET_DIR/debug/chat-api"
export CHAT_GATEWAY_BIN="$TARGET_DIR/debug/chat-gateway"
export CHAT_WORKER_BIN="$TARGET_DIR/debug/chat-worker"
export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}"
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
VENV=$TARGET_DIR/sio-interop-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/python/requirements.txt"
export GATEWAY_E2E_PYTHON="$VENV/bin/python"

echo "-- gateway end-to-end (socket.io-client, python-socketio)"
timeout 600 node --test --test-concurrency=1 "$DIR/js/"
echo "gateway e2e: ok"
