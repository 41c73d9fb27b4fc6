#!/usr/bin/env bash
# History benchmark (issue 2): a room with 1,000,000 messages, pages of 50 read with wrk.
#   bench/history.sh [messages] [seconds]
# Uses a separate database (chat_bench) and API port 8090 so it never touches `make up`'s data.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SECS=${2:-20}
scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
root_sql() { mariadb -uroot -e "$1" 2>/dev/null || mariadb -uroot -h127.0.0.1 -e "$1"; }
root_sql "DROP DATABASE IF EXISTS chat_bench; CREATE DATABASE chat_bench CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
  GRANT ALL PRIVILEGES ON chat_bench.* TO 'chat'@'127.0.0.1'; GRANT ALL PRIVILEGES ON chat_bench.* TO 'chat'@'localhost';"
export DATABASE_URL=mysql://chat:chat@127.0.0.1:3306/chat_bench REDIS_PREFIX=bench API_PORT=8090 \
  API_RATE_LIMIT_PER_MINUTE=1000000 LOGIN_ATTEMPTS_PER_ACCOUNT=10000 LOGIN_ATTEMPTS_PER_IP=100000 RUST_LOG=warn
cargo build --release -q -p chat-api --bins --examples
eval "$(target/release/examples/seed_history "$N")"
target/release/chat-api >/tmp/chat-bench-api.log 2>&1 &
API=$!
trap 'kill $API 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:8090/health >/dev/null 2>&1 && break; sleep 0.2; done
URL="http://127.0.0.1:8090/api/v1/rooms/$ROOM/messages"
cat >/tmp/chat-bench-random.lua <<LUA
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "$URL?limit=50&before=" .. math.random(51, $N))
end
LUA
for c in 2 8; do
  echo "== newest page of 50, $c connections, ${SECS}s"
  wrk -t2 -c$c -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "$URL?limit=50"
  echo "== random deep pages of 50 (before = random seq), $c connections, ${SECS}s"
  wrk -t2 -c$c -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" -s /tmp/chat-bench-random.lua "$URL"
done
echo "== login (argon2id), 2 connections"
cat >/tmp/chat-bench-login.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login":"$USER","password":"bench-password"}'
LUA
wrk -t2 -c2 -d10s --latency -s /tmp/chat-bench-login.lua http://127.0.0.1:8090/api/v1/auth/login
