#!/usr/bin/env bash
# Fan-out, side by side (issue 7; the future `make bench`): one room of MEMBERS members split over two
# instances, SENDERS of them sending at each rate of RATES, against
#   ours:     two release `chat-gateway` processes on Redis (MESSAGE_RATE_LIMIT=1000000; no worker, so
#             the stream just grows for the run), and
#   baseline: two `bench/baseline` processes (stock socket.io 4 + @socket.io/redis-adapter, same Redis,
#             same JWT secret), installed here with npm ci,
# both driven by the same `chat-bench fanout` (release build), users minted in a fresh database
# (--users-from-seed). A system's rate stops rising once its p99 passes P99_STOP_MS (50). Prints a
# Markdown table; every run's JSON, SVG and table, and the machine's facts, stay in target/bench/<stamp>/.
#
#   bench/run.sh                          # MEMBERS=1000 SENDERS=10 RATES="25 50 100 200" SECS=8
#   MEMBERS=200 RATES="50" SECS=3 SCENARIOS=fanout bench/run.sh
#
# SCENARIOS (default "idle fanout rooms persist"):
#   idle     memory per idle connection: for each count of IDLE_COUNTS (1000 5000 15000), one fresh
#            instance of each system, that many connections held 3 s, its RSS and the slope between counts
#   fanout   the fan-out above, rates rising
#   rooms    ROOMS (1000) rooms of ROOM_MEMBERS (5), one sender per room, ROOM_RATE (1000) msgs/s in all
#   persist  ours only: the worker started, a fan-out at PERSIST_RATE (100) msgs/s, the rows of the run
#            counted against the acks (chat-bench --verify-persisted)
#
# Needs MariaDB and Redis as the tests do (scripts/deps.sh), node and npm. Runs bounded in time and only
# against loopback. The bench client shares the machine's cores with the servers: see cpu.bench_secs.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${MEMBERS:-1000}
SENDERS=${SENDERS:-10}
RATES=${RATES:-25 50 100 200}
SECS=${SECS:-8}
SOURCE_IPS=${SOURCE_IPS:-4}
P99_STOP_MS=${P99_STOP_MS:-50}
SCENARIOS=${SCENARIOS:-idle fanout rooms persist}
IDLE_COUNTS=${IDLE_COUNTS:-1000 5000 15000}
ROOMS=${ROOMS:-1000}
ROOM_MEMBERS=${ROOM_MEMBERS:-5}
ROOM_RATE=${ROOM_RATE:-1000}
PERSIST_RATE=${PERSIST_RATE:-100}
DB_BASE=${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}
REDIS_URL=${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}
if [[ $DB_BASE =~ ^mysql://([^:@/]+):([^@/]*)@([^:/]+):?([0-9]*)/?$ ]]; then
  MYSQL=(mysql "-u${BASH_REMATCH[1]}" "-p${BASH_REMATCH[2]}" "-h${BASH_REMATCH[3]}" "-P${BASH_REMATCH[4]:-3306}")
else
  echo "bench/run.sh: cannot read CHAT_TEST_DATABASE_URL=$DB_BASE" >&2
  exit 1
fi

cargo build --release --quiet --locked -p chat-api -p chat-gateway -p chat-worker -p chat-bench
(cd bench/baseline && npm ci --no-audit --no-fund --loglevel=error)
BIN=target/release
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=target/bench/run-$STAMP
mkdir -p "$OUT"

ID=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
DB=chat_test_bench_fanout_$ID  # the chat user may create chat_test_* databases
PREFIX=bench-$ID
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "not ready: $1" >&2
  return 1
}

"${MYSQL[@]}" -e "CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
export APP_ENV=development DATABASE_URL="$DB_BASE/$DB" REDIS_URL BIND_HOST=127.0.0.1 LOG_FORMAT=text \
  RUST_LOG=warn NO_COLOR=1
"$BIN/chat-api" migrate >"$OUT/migrate.log" 2>&1

join() { local IFS=,; echo "$*"; }
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "node $(node --version), socket.io $(node -p 'require("./bench/baseline/node_modules/socket.io/package.json").version')"
} | tee "$OUT/machine.txt"

# start_one ours|baseline LOGNAME: one fresh instance; sets ONE_PID and ONE_URL.
start_one() {
  local port
  port=$(free_port)
  if [ "$1" = ours ]; then
    REDIS_PREFIX=$PREFIX GATEWAY_PORT=$port GATEWAY_ID="bench-$ID-$2" MESSAGE_RATE_LIMIT=1000000 \
      "$BIN/chat-gateway" >"$OUT/$2.log" 2>&1 &
  else
    PORT=$port REDIS_PREFIX="$PREFIX-baseline" node bench/baseline/server.mjs >"$OUT/$2.log" 2>&1 &
  fi
  ONE_PID=$!
  PIDS+=("$ONE_PID")
  ONE_URL="http://127.0.0.1:$port"
  wait_ready "$ONE_URL/ready"
}

if [[ " $SCENARIOS " == *" idle "* ]]; then
  echo "idle: memory per connection, one fresh instance per count: $IDLE_COUNTS connections"
  for system in ours baseline; do
    for n in $IDLE_COUNTS; do
      start_one "$system" "idle-$system-$n"
      sleep 1
      echo "-- $system, $n idle connections"
      timeout 300 "$BIN/chat-bench" --quiet --url "$ONE_URL" --users-from-seed "$DATABASE_URL" --users 100 \
        --source-ips "$SOURCE_IPS" --ramp-up 1s --duration 2s --drain 0s --watch-pid "$ONE_PID" \
        --json "$OUT/idle-$system-$n.json" idle -n "$n" >"$OUT/idle-$system-$n.txt"
      kill "$ONE_PID" 2>/dev/null || true
      wait "$ONE_PID" 2>/dev/null || true
    done
  done
  python3 - "$OUT" $IDLE_COUNTS <<'EOF' | tee "$OUT/idle.md"
import json, sys
out, counts = sys.argv[1], [int(c) for c in sys.argv[2:]]
print("| system | connections | ok | RSS MiB | RSS growth KiB per connection | slope KiB per connection (from the smallest count) |")
print("|---|---:|---:|---:|---:|---:|")
for system in ("ours", "baseline"):
    first = None
    for n in counts:
        s = json.load(open(f"{out}/idle-{system}-{n}.json"))
        w = s["cpu"]["watched"][0]
        rss = w["rss_kib"] or 0
        ok = s["connections"]["ok"]
        slope = "-" if first is None else f"{(rss - first[1]) / max(ok - first[0], 1):.2f}"
        if first is None:
            first = (ok, rss)
        print(f"| {system} | {n} | {ok} | {rss / 1024:.1f} | {s['cpu']['watched_rss_growth_kib_per_connection']} | {slope} |")
EOF
fi

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if ! has fanout && ! has rooms && ! has persist; then
  echo "results: $OUT"
  exit 0
fi

OURS_URLS=()
OURS_PIDS=()
for i in 0 1; do
  port=$(free_port)
  REDIS_PREFIX=$PREFIX GATEWAY_PORT=$port GATEWAY_ID="bench-$ID-$i" MESSAGE_RATE_LIMIT=1000000 \
    "$BIN/chat-gateway" >"$OUT/gateway$i.log" 2>&1 &
  PIDS+=($!)
  OURS_PIDS+=($!)
  OURS_URLS+=("http://127.0.0.1:$port")
done
BASE_URLS=()
BASE_PIDS=()
for i in 0 1; do
  port=$(free_port)
  PORT=$port REDIS_PREFIX="$PREFIX-baseline" node bench/baseline/server.mjs >"$OUT/baseline$i.log" 2>&1 &
  PIDS+=($!)
  BASE_PIDS+=($!)
  BASE_URLS+=("http://127.0.0.1:$port")
done
for u in "${OURS_URLS[@]}" "${BASE_URLS[@]}"; do wait_ready "$u/ready"; done

# One chat-bench run against one system: run_bench ours|baseline NAME ARGS… (JSON, SVG, table in $OUT).
run_bench() {
  local system=$1 name=$2 urls pids
  shift 2
  if [ "$system" = ours ]; then urls=$(join "${OURS_URLS[@]}"); pids=$(join "${OURS_PIDS[@]}");
  else urls=$(join "${BASE_URLS[@]}"); pids=$(join "${BASE_PIDS[@]}"); fi
  timeout $((SECS + 300)) "$BIN/chat-bench" --quiet --url "$urls" --users-from-seed "$DATABASE_URL" \
    --source-ips "$SOURCE_IPS" --ramp-up 1s --duration "${SECS}s" --drain 1s --watch-pid "$pids" \
    --json "$OUT/$name.json" --svg "$OUT/$name.svg" "$@" >"$OUT/$name.txt"
}

if has fanout; then
echo "fan-out: $MEMBERS members over two instances, $SENDERS senders, rates: $RATES msgs/s, ${SECS}s each (+1s ramp-up); a system's rates stop rising once its p99 passes ${P99_STOP_MS} ms"
declare -A stopped=()
for rate in $RATES; do
  for system in ours baseline; do
    [ -n "${stopped[$system]:-}" ] && continue
    echo "-- $system at $rate msgs/s"
    run_bench "$system" "$system-$rate" fanout --members "$MEMBERS" --senders "$SENDERS" --rate "$rate"
    p99=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency"]["p99_ms"])' "$OUT/$system-$rate.json")
    echo "   p99 $p99 ms"
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$p99" "$P99_STOP_MS"; then
      stopped[$system]=1
    fi
  done
done

python3 - "$OUT" $RATES <<'EOF' | tee "$OUT/summary.md"
import json, sys
out, rates = sys.argv[1], sys.argv[2:]
print("| system | msgs/s | deliveries/s | p50 ms | p99 ms | max ms | servers CPU-s | CPU-s per 1M deliveries | bench CPU-s | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for rate in rates:
    for system in ("ours", "baseline"):
        try:
            s = json.load(open(f"{out}/{system}-{rate}.json"))
        except FileNotFoundError:
            continue  # stopped rising: p99 was already past the limit
        cpu = sum(w["cpu_secs"] for w in s["cpu"]["watched"])
        per_m = s["cpu"]["watched_secs_per_million_deliveries"]
        errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
        l = s["latency"]
        print(f"| {system} | {rate} | {s['deliveries']['per_sec']:,.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} "
              f"| {l['max_ms']:.2f} | {cpu:.2f} | {per_m if per_m is not None else '-'} | {s['cpu']['bench_secs']:.2f} | {errors} |")
EOF
fi

# Many small rooms: per-room subscriptions (ours) against the adapter's every-node-gets-everything.
if has rooms; then
  echo "rooms: $ROOMS rooms x $ROOM_MEMBERS members over two instances, one sender per room, $ROOM_RATE msgs/s in all, ${SECS}s"
  for system in ours baseline; do
    echo "-- $system"
    run_bench "$system" "rooms-$system" rooms --rooms "$ROOMS" --members "$ROOM_MEMBERS" --senders "$ROOMS" --rate "$ROOM_RATE"
  done
  python3 - "$OUT" <<'EOF' | tee "$OUT/rooms.md"
import json, sys
out = sys.argv[1]
print("| system | connections | msgs/s | deliveries/s | p50 ms | p99 ms | servers CPU-s | CPU-s per 1M deliveries | bench CPU-s | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for system in ("ours", "baseline"):
    s = json.load(open(f"{out}/rooms-{system}.json"))
    cpu = sum(w["cpu_secs"] for w in s["cpu"]["watched"])
    errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
    l = s["latency"]
    print(f"| {system} | {s['connections']['ok']} | {s['scenario']['rate_per_sec']:g} | {s['deliveries']['per_sec']:,.0f} "
          f"| {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | {cpu:.2f} | {s['cpu']['watched_secs_per_million_deliveries']} "
          f"| {s['cpu']['bench_secs']:.2f} | {errors} |")
EOF
fi

# Persistence under load (ours only: the baseline stores nothing): the worker started now (it first
# drains what the runs above left in the stream), a fan-out at PERSIST_RATE, then the rows of the run's
# room counted against the acks.
if has persist; then
  port=$(free_port)
  REDIS_PREFIX=$PREFIX WORKER_PORT=$port "$BIN/chat-worker" >"$OUT/worker.log" 2>&1 &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
  wait_ready "http://127.0.0.1:$port/ready"
  echo "-- persistence: fan-out of $MEMBERS members at $PERSIST_RATE msgs/s with the worker, rows counted against acks"
  OURS_PIDS+=("$WORKER_PID")
  run_bench ours persist --verify-persisted "$DATABASE_URL" --persist-timeout 120s \
    fanout --members "$MEMBERS" --senders "$SENDERS" --rate "$PERSIST_RATE"
  python3 - "$OUT/persist.json" <<'EOF' | tee "$OUT/persist.md"
import json, sys
s = json.load(open(sys.argv[1]))
p = s["persistence"]
print("| msgs/s | acked | rows | missing | lag after last send s | rows/s | gateways + worker CPU-s | errors |")
print("|---:|---:|---:|---:|---:|---:|---:|---|")
cpu = sum(w["cpu_secs"] for w in s["cpu"]["watched"])
errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
print(f"| {s['scenario']['rate_per_sec']:g} | {p['expected']} | {p['rows']} | {p['missing']} | {p['lag_after_last_send_secs']} "
      f"| {p['rows_per_sec']:g} | {cpu:.2f} | {errors} |")
EOF
fi
echo "results: $OUT"
