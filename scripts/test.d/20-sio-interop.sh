#!/usr/bin/env bash
# Interop of the sio crate with real clients: npm `socket.io-client` v4 (node --test) and PyPI
# `python-socketio` (unittest), against `cargo run -p sio --example interop` on a free port.
# Installs what it needs: npm packages in crates/sio/interop/node_modules, a venv in target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DIR=crates/sio/interop

cargo build --quiet -p sio --example interop
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
VENV=$TARGET_DIR/sio-interop-venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/python/requirements.txt"

LOG=$(mktemp)
PORT=0 "$TARGET_DIR/debug/examples/interop" >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q '^PORT=' "$LOG" && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; echo "interop server died" >&2; exit 1; }
  sleep 0.1
done
PORT=$(sed -n 's/^PORT=//p' "$LOG" | head -n1)
[ -n "$PORT" ] || { cat "$LOG"; echo "interop server did not start" >&2; exit 1; }
export SIO_URL="http://127.0.0.1:$PORT"
echo "interop server on $SIO_URL"

echo "-- socket.io-client (npm)"
(cd "$DIR" && timeout 120 node --test --test-concurrency=1 js/)
echo "-- python-socketio (PyPI)"
(cd "$DIR/python" && timeout 120 "$VENV/bin/python" -m unittest -v test_client)
echo "sio interop: ok"
