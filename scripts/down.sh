#!/usr/bin/env bash
# `make down`: stops the services `make up` started, and the local Redis Cluster of `make up REDIS=cluster`
# (MariaDB and the single Redis are left running).
set -uo pipefail
cd "$(dirname "$0")/.."
for pidfile in .run/*.pid; do
  [ -e "$pidfile" ] || continue
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "down: stopped $name"
  fi
  rm -f "$pidfile"
done
if [ -e .run/redis-cluster ]; then
  bash scripts/dev/redis-cluster.sh down && echo "down: stopped the local Redis Cluster"
  rm -f .run/redis-cluster
fi
