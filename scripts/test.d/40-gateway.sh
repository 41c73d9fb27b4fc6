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
source scripts/testlib/e2e-env.sh  # DIR, TARGET_DIR, the binaries, npm packages
VENV=$TARGET_DIR/sio-interop-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/python/requirements.txt"
export GATEWAY_E2E_PYTHON="$VENV/bin/python"

echo "-- gateway end-to-end (socket.io-client, python-socketio)"
timeout 600 node --test --test-concurrency=1 "$DIR/js/"
echo "gateway e2e: ok"
