#!/usr/bin/env bash
# The official Engine.IO / Socket.IO conformance suites against the sio `conformance` example.
#
# The suites live on GitHub (socketio/engine.io-protocol, socketio/socket.io-protocol), which CI
# cannot reach, so this runs only when checkouts are provided:
#   ENGINE_IO_PROTOCOL_DIR=/path/to/engine.io-protocol SOCKET_IO_PROTOCOL_DIR=/path/to/socket.io-protocol \
#     scripts/test.d/30-sio-conformance.sh
# Without them it skips (exit 77) (the same behaviours are covered by crates/sio/tests/*.rs, run by cargo test).
# The suites hard-code http://localhost:3000, so port 3000 must be free.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${ENGINE_IO_PROTOCOL_DIR:-}" ] && [ -z "${SOCKET_IO_PROTOCOL_DIR:-}" ]; then
  echo "sio conformance: skipped (set ENGINE_IO_PROTOCOL_DIR / SOCKET_IO_PROTOCOL_DIR to run the official suites)"
  exit 77
fi

cargo build --quiet -p sio --example conformance
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null; then
  echo "port 3000 is in use; the suites need it" >&2
  exit 1
fi
PORT=3000 "$TARGET_DIR/debug/examples/conformance" >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null && break
  sleep 0.1
done

status=0
for dir in "${ENGINE_IO_PROTOCOL_DIR:-}" "${SOCKET_IO_PROTOCOL_DIR:-}"; do
  [ -n "$dir" ] || continue
  echo "-- $dir/test-suite"
  (cd "$dir/test-suite" && npm ci --no-audit --no-fund --loglevel=error && timeout 300 npx mocha test-suite.js) || status=1
done
exit $status
