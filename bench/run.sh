#!/usr/bin/env bash
# `make bench`: our stack side by side with a Node baseline, on this machine, in one run (issue 7), then
# the figures written into docs/BENCHMARKS.md (between its "make bench" markers) by bench/report.py.
#
#   ours:     release `chat-gateway` processes on Redis (MESSAGE_RATE_LIMIT=1000000 for the bench's
#             senders; no worker but in `persist`, so the stream just grows), and
#   baseline: `bench/baseline` processes (stock socket.io 4 + @socket.io/redis-adapter, same Redis, same
#             JWT secret), installed here with npm ci,
# both driven by the same `chat-bench` (release build), users minted in a fresh database
# (--users-from-seed). Every run's JSON, SVG and table, the machine's facts and the report stay in
# target/bench/run-<stamp>/.
#
# SCENARIOS (default "idle fanout rooms persist"):
#   idle     memory per idle connection: for each count of IDLE_COUNTS (1000 5000 15000), one fresh
#            instance of each system, that many connections held 3 s, its RSS and the slope between counts
#   fanout   one room of MEMBERS (1000) members over two instances, SENDERS (10) senders; the rate rises
#            through RATES (msgs/s) until p99 passes P99_STOP_MS (50): the last rate under it is the
#            system's maximum. Then the latency at half of each system's maximum (the ramp doubles, so
#            that is the previous step; measured anew when the ramp has no such step)
#   rooms    ROOMS (10000) rooms of ROOM_MEMBERS (5) over ROOM_INSTANCES (4) instances, one sender per
#            room, ROOM_RATE (2000) msgs/s in all, driven by ROOM_PROCS (4) chat-bench processes started
#            together (a process may hold at most 20,000 files: 50,000 connections need several on both
#            sides); Redis's CPU reported apart
#   persist  ours only: the worker started, a fan-out at half of our maximum (PERSIST_RATE to override),
#            the rows of the run counted against the acks (chat-bench --verify-persisted), the worker's
#            commit lag over the run from its /metrics
#
#   make bench                                    # everything, ~8 min on 2 cores
#   MEMBERS=200 RATES="50" SECS=3 SCENARIOS=fanout BENCH_WRITE_DOCS=0 bench/run.sh
#
# BENCH_WRITE_DOCS=0 leaves docs/BENCHMARKS.md alone (the report is still in the run's folder). Needs
# MariaDB and Redis as the tests do (scripts/deps.sh), node and npm. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${MEMBERS:-1000}
SENDERS=${SENDERS:-10}
RATES=${RATES:-25 50 100 200 400 800}
SECS=${SECS:-8}
SOURCE_IPS=${SOURCE_IPS:-4}
P99_STOP_MS=${P99_STOP_MS:-50}
SCENARIOS=${SCENARIOS:-idle fanout rooms persist}
IDLE_COUNTS=${IDLE_COUNTS:-1000 5000 15000}
ROOMS=${ROOMS:-10000}
ROOM_MEMBERS=${ROOM_MEMBERS:-5}
ROOM_RATE=${ROOM_RATE:-2000}
ROOM_INSTANCES=${ROOM_INSTANCES:-4}
ROOM_PROCS=${ROOM_PROCS:-4}
ROOM_SOURCE_IPS=${ROOM_SOURCE_IPS:-8}
PERSIST_RATE=${PERSIST_RATE:-}
BENCH_WRITE_DOCS=${BENCH_WRITE_DOCS:-1}
source scripts/testlib/db.sh  # DB_BASE, REDIS_URL, MYSQL
source bench/lib.sh          # free_port, wait_ready, join
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
T_START=$(date +%s)

cargo build --release --quiet --locked -p chat-api -p chat-gateway -p chat-worker -p chat-bench
(cd bench/baseline && npm ci --no-audit --no-fund --loglevel=error)
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release
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
json_get() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2:]]; print(v)' "$@"; }

"${MYSQL[@]}" -e "CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
export APP_ENV=development DATABASE_URL="$DB_BASE/$DB" REDIS_URL BIND_HOST=127.0.0.1 LOG_FORMAT=text \
  RUST_LOG=warn NO_COLOR=1
"$BIN/chat-api" migrate >"$OUT/migrate.log" 2>&1
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
case "$REDIS_URL" in *127.0.0.1*|*localhost*) ;; *) REDIS_PID= ;; esac

# The machine's facts and the settings, for the report.
python3 - "$OUT/machine.json" <<EOF
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
    "commit": sh("git rev-parse --short HEAD") or "?",
    "dirty": bool(sh("git status --porcelain --untracked-files=no")),
    "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "cores": os.cpu_count(), "cpu": cpu,
    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "kernel": platform.release(), "os": sh(". /etc/os-release && echo \$PRETTY_NAME"),
    "load_before": open("/proc/loadavg").read().split()[:3],
    "rustc": sh("rustc --version"), "node": sh("node --version"),
    "socket_io": sh("node -p 'require(\"./bench/baseline/node_modules/socket.io/package.json\").version'"),
    "redis_adapter": sh("node -p 'require(\"./bench/baseline/node_modules/@socket.io/redis-adapter/package.json\").version'"),
    "redis": sh("redis-server --version | grep -o 'v=[^ ]*' | cut -c3-"),
    "mariadb": sh("${MYSQL[*]} -N -e 'SELECT VERSION()'"),
    "settings": {
        "SCENARIOS": "$SCENARIOS", "IDLE_COUNTS": "$IDLE_COUNTS", "MEMBERS": "$MEMBERS", "SENDERS": "$SENDERS",
        "RATES": "$RATES", "SECS": "$SECS", "P99_STOP_MS": "$P99_STOP_MS", "ROOMS": "$ROOMS",
        "ROOM_MEMBERS": "$ROOM_MEMBERS", "ROOM_RATE": "$ROOM_RATE", "ROOM_INSTANCES": "$ROOM_INSTANCES",
        "ROOM_PROCS": "$ROOM_PROCS", "PERSIST_RATE": "$PERSIST_RATE", "SOURCE_IPS": "$SOURCE_IPS"},
}, open(sys.argv[1], "w"), indent=1)
EOF
echo "bench: results in $OUT"

# start_system ours|baseline N NAME: N fresh instances; sets SYS_URLS, SYS_PIDS.
start_system() {
  local system=$1 n=$2 name=$3 i port
  SYS_URLS=()
  SYS_PIDS=()
  for ((i = 0; i < n; i++)); do
    port=$(free_port)
    if [ "$system" = ours ]; then
      REDIS_PREFIX=$PREFIX GATEWAY_PORT=$port GATEWAY_ID="bench-$ID-$name-$i" MESSAGE_RATE_LIMIT=1000000 \
        "$BIN/chat-gateway" >"$OUT/$name-$i.log" 2>&1 &
    else
      PORT=$port REDIS_PREFIX="$PREFIX-baseline" node bench/baseline/server.mjs >"$OUT/$name-$i.log" 2>&1 &
    fi
    PIDS+=($!)
    SYS_PIDS+=($!)
    SYS_URLS+=("http://127.0.0.1:$port")
  done
  for u in "${SYS_URLS[@]}"; do wait_ready "$u/ready"; done
}
stop_system() {
  for p in "${SYS_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SYS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

if has idle; then
  echo "idle: memory per connection, one fresh instance per count: $IDLE_COUNTS connections"
  for system in ours baseline; do
    for n in $IDLE_COUNTS; do
      start_system "$system" 1 "idle-$system-$n"
      sleep 1
      echo "-- $system, $n idle connections"
      timeout 300 "$BIN/chat-bench" --quiet --url "${SYS_URLS[0]}" --users-from-seed "$DATABASE_URL" --users 100 \
        --source-ips "$SOURCE_IPS" --ramp-up 1s --duration 2s --drain 0s --watch-pid "${SYS_PIDS[0]}" \
        --json "$OUT/idle-$system-$n.json" idle -n "$n" >"$OUT/idle-$system-$n.txt"
      stop_system
    done
  done
fi

# run_bench NAME ARGS…: one chat-bench run against the system of URLS and PIDS (comma lists; JSON, SVG,
# table in $OUT).
run_bench() {
  local name=$1
  shift
  timeout $((SECS + 300)) "$BIN/chat-bench" --quiet --url "$URLS" \
    --users-from-seed "$DATABASE_URL" --source-ips "$SOURCE_IPS" --ramp-up 1s --duration "${SECS}s" \
    --drain 1s --watch-pid "$PIDS_OF" --json "$OUT/$name.json" --svg "$OUT/$name.svg" \
    "$@" >"$OUT/$name.txt"
}
over_limit() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$1" "$P99_STOP_MS"; }

# The fan-out: both systems up at once, the rates alternating between them, so that both see the same
# machine; a system stops rising once its p99 passes the limit.
if has fanout; then
  echo "fan-out: $MEMBERS members over two instances, $SENDERS senders, rates: $RATES msgs/s, ${SECS}s each (+1s ramp-up); a system's rate stops rising once its p99 passes ${P99_STOP_MS} ms"
  declare -A SURLS=() SPIDS=() MAX=() stopped=()
  for system in ours baseline; do
    start_system "$system" 2 "fanout-$system"
    SURLS[$system]=$(join "${SYS_URLS[@]}")
    SPIDS[$system]=$(join "${SYS_PIDS[@]}")
  done
  for rate in $RATES; do
    for system in ours baseline; do
      [ -n "${stopped[$system]:-}" ] && continue
      echo "-- $system at $rate msgs/s"
      URLS=${SURLS[$system]} PIDS_OF=${SPIDS[$system]} \
        run_bench "$system-$rate" fanout --members "$MEMBERS" --senders "$SENDERS" --rate "$rate"
      p99=$(json_get "$OUT/$system-$rate.json" latency p99_ms)
      echo "   p99 $p99 ms"
      if over_limit "$p99"; then stopped[$system]=1; else MAX[$system]=$rate; fi
    done
  done
  # Half of the maximum: the previous step of a doubling ramp, or a run of its own.
  for system in ours baseline; do
    [ -n "${MAX[$system]:-}" ] || continue
    half=$(python3 -c 'import sys; r=float(sys.argv[1])/2; print(int(r) if r == int(r) else r)' "${MAX[$system]}")
    if [ ! -f "$OUT/$system-$half.json" ]; then
      echo "-- $system at $half msgs/s (half of its maximum)"
      URLS=${SURLS[$system]} PIDS_OF=${SPIDS[$system]} \
        run_bench "$system-$half" fanout --members "$MEMBERS" --senders "$SENDERS" --rate "$half"
    fi
    echo "$half" >"$OUT/$system-half.rate"
    echo "${MAX[$system]}" >"$OUT/$system-max.rate"
  done
  for system in ours baseline; do
    IFS=, read -ra SYS_PIDS <<<"${SPIDS[$system]}"
    stop_system
  done
fi

# Many small rooms, several bench processes started together on a shared start file.
if has rooms; then
  per_proc=$((ROOMS / ROOM_PROCS))
  echo "rooms: $ROOMS rooms x $ROOM_MEMBERS members over $ROOM_INSTANCES instances, one sender per room, $ROOM_RATE msgs/s in all, ${SECS}s; $ROOM_PROCS bench processes of $per_proc rooms"
  for system in ours baseline; do
    echo "-- $system"
    start_system "$system" "$ROOM_INSTANCES" "rooms-$system"
    sync_dir=$(mktemp -d)
    watch=$(join "${SYS_PIDS[@]}" ${REDIS_PID:+"$REDIS_PID"})
    procs=()
    for ((k = 0; k < ROOM_PROCS; k++)); do
      timeout $((SECS + 400)) "$BIN/chat-bench" --quiet --url "$(join "${SYS_URLS[@]}")" \
        --users-from-seed "$DATABASE_URL" --source-ips "$ROOM_SOURCE_IPS" --connect-timeout 180s \
        --ramp-up 1s --duration "${SECS}s" --drain 1s --watch-pid "$watch" \
        --ready-file "$sync_dir/ready.$k" --start-file "$sync_dir/go" --json "$OUT/rooms-$system-$k.json" \
        rooms --rooms "$per_proc" --members "$ROOM_MEMBERS" --senders "$per_proc" \
        --rate "$(python3 -c "print($ROOM_RATE / $ROOM_PROCS)")" >"$OUT/rooms-$system-$k.txt" &
      procs+=($!)
    done
    for _ in $(seq 1 2000); do
      [ "$(find "$sync_dir" -name 'ready.*' | wc -l)" -ge "$ROOM_PROCS" ] && break
      alive=0
      for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
      [ "$alive" -lt "$ROOM_PROCS" ] && break
      sleep 0.1
    done
    touch "$sync_dir/go"
    rc=0
    for p in "${procs[@]}"; do wait "$p" || rc=$?; done
    rm -rf "$sync_dir"
    [ "$rc" = 0 ] || { echo "rooms: a chat-bench process failed ($rc)" >&2; exit 1; }
    echo "${REDIS_PID:-}" >"$OUT/rooms-$system.redis-pid"
    stop_system
  done
fi

# Persistence under load (ours only: the baseline stores nothing): the worker started now (it first
# drains what the runs above left in the stream), a fan-out at half of our maximum, then the rows of the
# run's room counted against the acks, and the worker's commit lag (XADD → COMMIT) over the run.
if has persist; then
  rate=${PERSIST_RATE:-$(cat "$OUT/ours-half.rate" 2>/dev/null || echo 100)}
  start_system ours 2 persist-gateway
  port=$(free_port)
  REDIS_PREFIX=$PREFIX WORKER_PORT=$port "$BIN/chat-worker" >"$OUT/worker.log" 2>&1 &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
  wait_ready "http://127.0.0.1:$port/ready"
  # Let it drain the earlier scenarios' stream before the run (at most 60 s).
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/metrics" |
      awk '/^chat_worker_stream_(undelivered|pending)/ {s += $2; n++} END {exit !(n > 0 && s + 0 == 0)}' && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/metrics" >"$OUT/persist-metrics-before.txt"
  echo "-- persistence: fan-out of $MEMBERS members at $rate msgs/s with the worker, rows counted against acks"
  URLS=$(join "${SYS_URLS[@]}") PIDS_OF=$(join "${SYS_PIDS[@]}" "$WORKER_PID") run_bench persist --verify-persisted "$DATABASE_URL" --persist-timeout 120s \
    fanout --members "$MEMBERS" --senders "$SENDERS" --rate "$rate"
  curl -fsS "http://127.0.0.1:$port/metrics" >"$OUT/persist-metrics-after.txt"
  stop_system
fi

echo $(($(date +%s) - T_START)) >"$OUT/elapsed.secs"
python3 bench/report.py "$OUT" >"$OUT/report.md"
cat "$OUT/report.md"
if [ "$BENCH_WRITE_DOCS" = 1 ]; then
  python3 bench/report.py --splice docs/BENCHMARKS.md "$OUT/report.md"
  echo "bench: docs/BENCHMARKS.md updated (section \"make bench\")"
fi
echo "bench: results in $OUT ($(cat "$OUT/elapsed.secs") s)"
