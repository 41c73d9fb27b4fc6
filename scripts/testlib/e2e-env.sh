# Sourced by the end-to-end suites (40-gateway, 47-chaos): builds the three services, points the
# harness at them and at the test servers, and installs the npm packages of services/gateway/tests.
# Sets DIR (the tests' folder) and TARGET_DIR.
DIR=services/gateway/tests
cargo build --quiet --locked -p chat-api -p chat-gateway -p chat-worker
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export CHAT_API_BIN="$TARGET_DIR/debug/chat-api"
export CHAT_GATEWAY_BIN="$TARGET_DIR/debug/chat-gateway"
export CHAT_WORKER_BIN="$TARGET_DIR/debug/chat-worker"
export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}"
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
