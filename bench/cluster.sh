#!/usr/bin/env bash
# Redis's cost on one Redis and on the local Redis Cluster (issue 14), side by side in one run:
#
#   sends   ROOMS (1000) rooms of MEMBERS (20) over two gateways and the worker, one sender per room,
#           RATE (500) msgs/s in all for SECS (20); what every Redis node spent from the first send to
#           the last ack (INFO cpu and commandstats, all nodes: replicas included), per acked message
#   MODES   "single cluster" (default); "cluster-nowait" is the cluster with REDIS_WAIT_REPLICAS=0, to
#           see what waiting for a replica costs
#   idle    the same connections and rooms held IDLE_SECS (60) without a message: commands every
#           node processed, per connection per minute
#
# then the projection of the throughput Redis allows: a single Redis saturates its one core at
# 1 s ÷ (its CPU per message); a cluster at 1 s ÷ (the CPU per message of its busiest master).
# A 2-core machine that also runs the gateways, the worker, MariaDB and the load tool cannot show
# that throughput itself, so the projection is what is reported (docs/BENCHMARKS.md, "Redis Cluster").
#
#   bench/cluster.sh                       # ~6 min; report in target/bench/cluster-<stamp>/report.md
#   ROOMS=200 SECS=5 IDLE_SECS=10 MODES=cluster bench/cluster.sh
#
# Needs MariaDB and Redis as the tests do (scripts/deps.sh); starts the cluster when it is not running
# (scripts/dev/redis-cluster.sh) and stops it after if it did. Loopback only, bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOMS=${ROOMS:-1000}
MEMBERS=${MEMBERS:-20}
RATE=${RATE:-500}
SECS=${SECS:-20}
IDLE_SECS=${IDLE_SECS:-60}
MODES=${MODES:-single cluster}
PROCS=${PROCS:-2}
source scripts/testlib/db.sh  # DB_BASE, REDIS_URL, MYSQL
source bench/lib.sh          # free_port, wait_ready, join
CLUSTER=scripts/dev/redis-cluster.sh
CPORT=${REDIS_CLUSTER_PORT:-7000}

cargo build --release --quiet --locked -p chat-api -p chat-gateway -p chat-worker -p chat-bench
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=target/bench/cluster-$STAMP
mkdir -p "$OUT"
ID=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
PIDS=()
DBS=()
started_cluster=0
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${DBS[@]}"; do "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS $d" 2>/dev/null || true; done
  if [ "$started_cluster" = 1 ]; then bash "$CLUSTER" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# bench_run NAME RATE DURATION: PROCS chat-bench processes over the rooms, started together; Redis is
# snapshotted once all are connected and joined, and again when they are done.
bench_run() {
  local name=$1 rate=$2 secs=$3 sync k rc=0 procs=()
  sync=$(mktemp -d)
  for ((k = 0; k < PROCS; k++)); do
    timeout $((secs + 400)) "$BIN/chat-bench" --quiet --url "$URLS" --users-from-seed "$DATABASE_URL" \
      --source-ips 4 --connect-timeout 180s --ramp-up 1s --duration "${secs}s" --drain 2s \
      --ready-file "$sync/ready.$k" --start-file "$sync/go" --json "$OUT/$name-$k.json" \
      rooms --rooms $((ROOMS / PROCS)) --members "$MEMBERS" --senders $((ROOMS / PROCS)) \
      --rate "$(python3 -c "print($rate / $PROCS)")" >"$OUT/$name-$k.txt" &
    procs+=($!)
  done
  for _ in $(seq 1 3000); do
    [ "$(find "$sync" -name 'ready.*' | wc -l)" -ge "$PROCS" ] && break
    sleep 0.1
  done
  python3 bench/redis_cost.py snap "$PORTS" >"$OUT/$name.before.json"
  touch "$sync/go"
  # Half-way through the drain: every ack is in, and no connection has closed yet (a disconnect
  # writes presence and last-seen, which is not what is measured).
  sleep "$(python3 -c "print(1 + $secs + 1.2)")"
  python3 bench/redis_cost.py snap "$PORTS" >"$OUT/$name.after.json"
  for p in "${procs[@]}"; do wait "$p" || rc=$?; done
  python3 bench/redis_cost.py diff "$OUT/$name.before.json" "$OUT/$name.after.json" >"$OUT/$name.redis.json"
  rm -rf "$sync"
  [ "$rc" = 0 ] || { echo "cluster bench: a chat-bench process failed ($rc)" >&2; exit 1; }
}

for mode in $MODES; do
  echo "== $mode"
  wait_replicas=
  if [ "$mode" = cluster-nowait ]; then wait_replicas=0; fi
  if [ "$mode" = cluster ] || [ "$mode" = cluster-nowait ]; then
    redis-cli -p "$CPORT" cluster info 2>/dev/null | grep -q cluster_state:ok || started_cluster=1
    url=$(bash "$CLUSTER" up)
    PORTS=$(join $(seq "$CPORT" $((CPORT + 5))))
  else
    url=$REDIS_URL
    PORTS=$(python3 -c 'import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)' "$url")
  fi
  db=chat_test_bench_cluster_${mode//-/_}_$ID
  DBS+=("$db")
  "${MYSQL[@]}" -e "CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
  export APP_ENV=development DATABASE_URL="$DB_BASE/$db" REDIS_URL=$url REDIS_PREFIX="bench-$ID-$mode" \
    BIND_HOST=127.0.0.1 LOG_FORMAT=text RUST_LOG=warn NO_COLOR=1 MESSAGE_RATE_LIMIT=1000000
  if [ -n "$wait_replicas" ]; then export REDIS_WAIT_REPLICAS=$wait_replicas; else unset REDIS_WAIT_REPLICAS; fi
  "$BIN/chat-api" migrate >"$OUT/$mode-migrate.log" 2>&1
  urls=()
  mode_pids=()
  for i in 0 1; do
    port=$(free_port)
    GATEWAY_PORT=$port GATEWAY_ID="bench-$ID-$mode-$i" "$BIN/chat-gateway" >"$OUT/$mode-gateway-$i.log" 2>&1 &
    PIDS+=($!)
    mode_pids+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  wport=$(free_port)
  WORKER_PORT=$wport "$BIN/chat-worker" >"$OUT/$mode-worker.log" 2>&1 &
  PIDS+=($!)
  mode_pids+=($!)
  for u in "${urls[@]}"; do wait_ready "$u/ready"; done
  wait_ready "http://127.0.0.1:$wport/ready"
  URLS=$(join "${urls[@]}")
  echo "-- sends: $ROOMS rooms x $MEMBERS members, $RATE msgs/s, ${SECS}s"
  bench_run "$mode-sends" "$RATE" "$SECS"
  echo "-- idle: the same rooms, ${IDLE_SECS}s without messages"
  bench_run "$mode-idle" 0.001 "$IDLE_SECS"
  for p in "${mode_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${mode_pids[@]}"; do wait "$p" 2>/dev/null || true; done
done

python3 bench/cluster_report.py "$OUT" "$MODES" "$ROOMS" "$MEMBERS" "$RATE" "$SECS" "$IDLE_SECS" | tee "$OUT/report.md"
echo "cluster bench: results in $OUT"
