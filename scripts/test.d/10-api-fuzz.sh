#!/usr/bin/env bash
# Property-based fuzzing of the whole REST API from its own OpenAPI document (schemathesis, PyPI):
# every operation gets generated valid and invalid input; any 5xx fails the run. It also proves the
# document is a valid OpenAPI 3.1 description the tool can drive.
# Runs the debug `chat-api` on a private database and Redis prefix; bounded by examples and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --quiet -p chat-api --bin chat-api

VENV=$TARGET_DIR/schemathesis-venv
[ -x "$VENV/bin/st" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'; }

DB=chat_test_apifuzz_$$
SERVER_URL=${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb -uchat -pchat -h127.0.0.1 -e "CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
LOG=$(mktemp)
DATABASE_URL=$SERVER_URL/$DB RUN_MIGRATIONS=true REDIS_PREFIX=fuzz$$ API_PORT=$PORT BIND_HOST=127.0.0.1 \
  API_RATE_LIMIT_PER_MINUTE=1000000 LOGIN_ATTEMPTS_PER_ACCOUNT=10000 LOGIN_ATTEMPTS_PER_IP=100000 \
  RUST_LOG=warn "$TARGET_DIR/debug/chat-api" >"$LOG" 2>&1 &
API=$!
cleanup() {
  kill "$API" 2>/dev/null || true
  wait "$API" 2>/dev/null || true
  mariadb -uchat -pchat -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB" || true
  redis-cli -h 127.0.0.1 --scan --pattern "fuzz$$:*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fsS "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done

# A signed-in caller with a room, so generated requests get past authentication.
TOKEN=$(curl -fsS "$BASE/api/v1/auth/register" -H 'Content-Type: application/json' \
  -d '{"username":"fuzzer","email":"fuzzer@example.com","password":"fuzzer-password"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
curl -fsS "$BASE/api/v1/rooms" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"fuzz room"}' >/dev/null

# Logout would revoke the token halfway through; it is covered by the integration tests.
status=0
"$VENV/bin/st" run "$BASE/api/v1/openapi.json" --checks not_a_server_error \
  -H "Authorization: Bearer $TOKEN" --exclude-path /api/v1/auth/logout \
  --max-examples 25 --seed 20261121 --workers 2 --phases examples,coverage,fuzzing \
  --max-time 60 --request-timeout 10 --suppress-health-check all || status=$?
if grep -q "panicked" "$LOG"; then
  echo "the API panicked:" >&2
  grep -A5 panicked "$LOG" >&2
  status=1
fi
exit $status
