#!/usr/bin/env bash
# The web client (web/) end to end in a real browser: Debian's Chromium, driven by playwright-core from
# npm (node --test web/test/), against the real API serving web/dist, two gateways and the worker on a
# fresh `chat_test_web_*` database and Redis prefix (web/test/stack.mjs starts and removes them).
# Installs what it needs: Chromium with apt-get when /usr/bin/chromium is missing, the npm packages of
# web/ (npm ci). Screenshots of the main screens: target/test-artifacts/web/.
# Exit 0 passed, 77 skipped (no MariaDB reachable, or no way to get Chromium, outside CI), else failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

skip() { # reason: fails in CI, skips elsewhere
  if [ "${CI:-}" = true ]; then echo "60-web: $1" >&2; exit 1; fi
  echo "60-web: skipped ($1)"
  exit 77
}

source scripts/testlib/db.sh  # DB_BASE, REDIS_URL, MYSQL
"${MYSQL[@]}" -e 'SELECT 1' >/dev/null 2>&1 || skip "no database at $DB_BASE; run scripts/deps.sh"

CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  command -v apt-get >/dev/null 2>&1 || skip "no $CHROMIUM and no apt-get to install it"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "60-web: installing chromium (apt-get)"
  $SUDO apt-get update -qq </dev/null >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium </dev/null >/dev/null
fi
export CHROMIUM_PATH=$CHROMIUM

cargo build --quiet --locked -p chat-api -p chat-gateway -p chat-worker
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export CHAT_API_BIN="$TARGET_DIR/debug/chat-api"
export CHAT_GATEWAY_BIN="$TARGET_DIR/debug/chat-gateway"
export CHAT_WORKER_BIN="$TARGET_DIR/debug/chat-worker"
export CHAT_TEST_DATABASE_URL=$DB_BASE
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export WEB_E2E_ARTIFACTS="$TARGET_DIR/test-artifacts/web"

bash web/build.sh
echo "-- web client in Chromium ($("$CHROMIUM" --version 2>/dev/null | head -1))"
timeout 300 node --test --test-concurrency=1 web/test/*.test.mjs </dev/null
echo "60-web: passed in $((SECONDS - started)) s (screenshots in $WEB_E2E_ARTIFACTS)"
