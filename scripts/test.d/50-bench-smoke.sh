#!/usr/bin/env bash
# chat-bench end to end, tiny: the API and one gateway (debug builds) on a fresh `chat_test_bench_*`
# database and Redis prefix, message rate limit raised; `chat-bench fanout` registers a few users
# through the API, runs ~3 s, and its JSON must show every connection up, deliveries, no error; then
# the same against one instance of the Node baseline of bench/run.sh (bench/baseline, npm ci).
# Exit 0 passed, 77 skipped (no MariaDB/Redis reachable outside CI), anything else failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/testlib/db.sh  # DB_BASE, REDIS_URL, MYSQL
if ! "${MYSQL[@]}" -e 'SELECT 1' >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then echo "50-bench-smoke: database unreachable" >&2; exit 1; fi
  echo "50-bench-smoke: skipped (no database at $DB_BASE; run scripts/deps.sh)"
  exit 77
fi

cargo build --quiet --locked -p chat-api -p chat-gateway -p chat-bench
python3 bench/report.py --selftest  # the arithmetic make bench merges and reports with
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/debug

ID=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
DB=chat_test_bench_$ID
PREFIX=benchtest-$ID
WORK=$(mktemp -d)
PIDS=()
ok=0
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  if [ "$ok" != 1 ]; then
    for f in "$WORK"/*.log; do [ -e "$f" ] && { echo "--- tail of $f"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"${MYSQL[@]}" -e "CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
export APP_ENV=development DATABASE_URL="$DB_BASE/$DB" REDIS_URL REDIS_PREFIX="$PREFIX" BIND_HOST=127.0.0.1 \
  API_RATE_LIMIT_PER_MINUTE=1000000 MESSAGE_RATE_LIMIT=1000000 LOG_FORMAT=text RUST_LOG=warn NO_COLOR=1
"$BIN/chat-api" migrate >"$WORK/migrate.log" 2>&1

API_PORT=$(free_port)
GW_PORT=$(free_port)
API_PORT=$API_PORT "$BIN/chat-api" serve >"$WORK/api.log" 2>&1 &
PIDS+=($!)
GATEWAY_PORT=$GW_PORT GATEWAY_ID="bench-smoke-$ID" "$BIN/chat-gateway" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")

for url in "http://127.0.0.1:$API_PORT/ready" "http://127.0.0.1:$GW_PORT/ready"; do
  for i in $(seq 1 150); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && break
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a service died before it was ready" >&2; exit 1; }; done
    [ "$i" = 150 ] && { echo "not ready: $url" >&2; exit 1; }
    sleep 0.2
  done
done

echo "-- chat-bench fanout: 8 members over 2 source addresses, 3 senders at 30 msgs/s, 3 s"
timeout 120 "$BIN/chat-bench" --quiet --url "http://127.0.0.1:$GW_PORT" --api "http://127.0.0.1:$API_PORT" \
  --source-ips 2 --ramp-up 500ms --duration 3s --drain 1s --watch-pid "$GW_PID" --json "$WORK/bench.json" \
  fanout --members 8 --senders 3 --rate 30 | tee "$WORK/bench.log"

python3 - "$WORK/bench.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
problems = []
if s["connections"]["ok"] != 8 or s["connections"]["failed"] != 0:
    problems.append(f"connections {s['connections']}")
m = s["messages"]
if m["sent"] == 0 or m["acked"] != m["sent"] or m["refused"] != 0:
    problems.append(f"messages {m}")
if s["deliveries"]["measured"] <= 0 or s["latency"]["count"] <= 0:
    problems.append(f"deliveries {s['deliveries']} latency {s['latency']}")
if s["errors"]:
    problems.append(f"errors {s['errors']}")
if not s["cpu"]["watched"] or s["cpu"]["watched"][0]["cpu_secs"] <= 0:
    problems.append(f"cpu {s['cpu']}")
if problems:
    print("chat-bench smoke FAILED: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"chat-bench smoke: ok ({m['acked']} acked, {s['deliveries']['measured']} deliveries measured)")
EOF

# The Node baseline of bench/run.sh, driven the same way (one instance; its users come from the API too).
echo "-- chat-bench fanout against the Node baseline (bench/baseline)"
(cd bench/baseline && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
BL_PORT=$(free_port)
PORT=$BL_PORT REDIS_PREFIX="$PREFIX-baseline" node bench/baseline/server.mjs >"$WORK/baseline.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 150); do
  curl -fsS -o /dev/null "http://127.0.0.1:$BL_PORT/ready" 2>/dev/null && break
  [ "$i" = 150 ] && { echo "baseline not ready" >&2; exit 1; }
  sleep 0.2
done
timeout 120 "$BIN/chat-bench" --quiet --url "http://127.0.0.1:$BL_PORT" --api "http://127.0.0.1:$API_PORT" \
  --ramp-up 500ms --duration 2s --drain 1s --json "$WORK/baseline.json" \
  fanout --members 4 --senders 2 --rate 20 >"$WORK/baseline-bench.log"
python3 - "$WORK/baseline.json" <<'EOF2'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["messages"]
ok = (s["connections"]["ok"] == 4 and s["connections"]["failed"] == 0 and m["sent"] > 0
      and m["acked"] == m["sent"] and s["deliveries"]["measured"] > 0 and not s["errors"])
if not ok:
    print(f"chat-bench against the baseline FAILED: {json.dumps(s)}", file=sys.stderr)
    sys.exit(1)
print(f"baseline smoke: ok ({m['acked']} acked, {s['deliveries']['measured']} deliveries measured)")
EOF2
ok=1
