#!/usr/bin/env bash
# A local Redis Cluster for development and the tests: 3 masters + 3 replicas on 127.0.0.1, ports
# $REDIS_CLUSTER_PORT … +5 (default 7000–7005), node-timeout 2000 ms, AOF (everysec), noeviction.
#   up      start it (idempotent): creates the cluster the first time, restarts any node that is down
#           from its own data directory (a killed master comes back as a replica), waits for
#           cluster_state:ok, then prints the URL the services take as REDIS_URL
#   down    stop every node (the data stays; `up` brings the same cluster back)
#   status  cluster info of the first node, one line per node
#   url     print the URL only
# State lives in $REDIS_CLUSTER_DIR (default ${TMPDIR:-/tmp}/chat-redis-cluster): one directory per node.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=${REDIS_CLUSTER_PORT:-7000}
DIR=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/chat-redis-cluster}
PORTS=$(seq "$BASE" $((BASE + 5)))

url() {
  local list=""
  for p in $PORTS; do list="$list,127.0.0.1:$p"; done
  echo "redis+cluster://${list#,}"
}

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
alive() { cli "$1" ping 2>/dev/null | grep -q PONG; }

start_node() {
  local port=$1 d="$DIR/$1"
  mkdir -p "$d"
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode no --daemonize yes \
    --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 2000 \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction
}

wait_until() { # seconds, description, command...
  local n=$1 what=$2
  shift 2
  for _ in $(seq 1 $((n * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "redis-cluster: $what did not happen within ${n}s" >&2
  return 1
}

cluster_ok() { cli "$BASE" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }

# Every node has joined (6 known nodes) and every slot is served.
settled() {
  cluster_ok || return 1
  [ "$(cli "$BASE" cluster info | awk -F: '/cluster_known_nodes/ {print $2+0}')" = 6 ] || return 1
  for p in $PORTS; do cli "$p" cluster info | grep -q 'cluster_state:ok' || return 1; done
  # three replicas, each with its master link up (a WAIT for one replica can then succeed)
  [ "$(cli "$BASE" cluster nodes | awk '$3 ~ /slave/ && $3 !~ /fail/ && $8 == "connected"' | wc -l)" = 3 ] || return 1
  for p in $PORTS; do
    if cli "$p" info replication | grep -q 'role:slave'; then
      cli "$p" info replication | grep -q 'master_link_status:up' || return 1
    fi
  done
}

up() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    scripts/deps.sh >/dev/null # installs Redis with apt-get when it is missing
  fi
  mkdir -p "$DIR"
  for p in $PORTS; do
    alive "$p" || start_node "$p"
  done
  for p in $PORTS; do wait_until 10 "node $p answering" alive "$p"; done
  if [ "$(cli "$BASE" cluster info | awk -F: '/cluster_slots_assigned/ {print $2+0}')" = 0 ]; then
    local nodes=""
    for p in $PORTS; do nodes="$nodes 127.0.0.1:$p"; done
    # shellcheck disable=SC2086 # one word per node
    redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
      { cat "$DIR/create.log" >&2; exit 1; }
  fi
  wait_until 30 "cluster_state:ok on every node" settled
  url
}

down() {
  for p in $PORTS; do
    if alive "$p"; then cli "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  for p in $PORTS; do wait_until 10 "node $p stopping" bash -c "! redis-cli -p $p ping" || true; done
}

status() {
  cli "$BASE" cluster info | grep -E 'cluster_state|cluster_slots_ok|cluster_known_nodes'
  cli "$BASE" cluster nodes | awk '{ role = ($3 ~ /slave/) ? "replica of " $4 : "master " $9; print $2, $1, $3, role }' | sort
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  url) url ;;
  *)
    echo "usage: $0 up|down|status|url" >&2
    exit 2
    ;;
esac
