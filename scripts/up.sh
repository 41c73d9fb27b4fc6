#!/usr/bin/env bash
# `make up`: dependencies, database, release build, the web client (web/build.sh), then the services in
# the background.
# State (pids, logs) lives in .run/. `make down` stops what this started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

export DATABASE_URL="${DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306/chat}"
mkdir -p .run
# `make up REDIS=cluster`: a local Redis Cluster (3 masters + 3 replicas, scripts/dev/redis-cluster.sh)
# instead of the single Redis; `make down` stops it again.
if [ "${REDIS:-single}" = cluster ]; then
  echo "up: starting a local Redis Cluster (scripts/dev/redis-cluster.sh)"
  REDIS_URL=$(bash scripts/dev/redis-cluster.sh up)
  export REDIS_URL
  touch .run/redis-cluster
elif [ "${REDIS:-single}" != single ]; then
  echo "up: REDIS must be single or cluster, not '${REDIS}'" >&2
  exit 2
fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export API_PORT="${API_PORT:-8080}"
export WORKER_PORT="${WORKER_PORT:-9090}"

echo "up: building (release)…"
cargo build --release --locked -q -p chat-api -p chat-worker -p chat-gateway --bins
echo "up: building the web client (web/)"
# The backend is useful without it: a failed web build is reported, not fatal.
web/build.sh || echo "up: the web client could not be built (see above); the API answers / with a 404 until it is" >&2
echo "up: applying migrations"
target/release/chat-api migrate

start() { # name, binary, extra env...
  local name=$1 bin=$2
  shift 2
  if [ -f ".run/$name.pid" ] && kill -0 "$(cat ".run/$name.pid")" 2>/dev/null; then
    echo "up: $name already running (pid $(cat ".run/$name.pid"))"
    return
  fi
  env "$@" nohup "target/release/$bin" >".run/$name.log" 2>&1 &
  echo $! >".run/$name.pid"
}

wait_http() { # name, url
  for _ in $(seq 1 60); do
    if curl -fsS "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "up: $1 did not become healthy; see .run/$1.log" >&2
  tail -20 ".run/$1.log" >&2 || true
  exit 1
}

GATEWAY_PORTS="${GATEWAY_PORTS:-3000 3001}"
# The web page connects to one of the gateways at random (they are stateless).
WEB_GATEWAY_URL="${WEB_GATEWAY_URL:-$(for p in $GATEWAY_PORTS; do printf 'http://localhost:%s,' "$p"; done)}"
start api chat-api WEB_DIR="${WEB_DIR:-$PWD/web/dist}" WEB_GATEWAY_URL="${WEB_GATEWAY_URL%,}"
start worker chat-worker
i=0
for port in $GATEWAY_PORTS; do
  i=$((i + 1))
  start "gateway$i" chat-gateway GATEWAY_PORT="$port" GATEWAY_ID="gateway$i"
done
wait_http api "http://127.0.0.1:${API_PORT}/health"
wait_http worker "http://127.0.0.1:${WORKER_PORT}/health"
i=0
for port in $GATEWAY_PORTS; do
  i=$((i + 1))
  wait_http "gateway$i" "http://127.0.0.1:${port}/ready"
done

cat <<MSG

The chat stack is up. Chat in your browser (open it in two windows, sign up twice):

  Web client     http://localhost:${API_PORT}/

  REST API       http://localhost:${API_PORT}/api/v1
  API docs       http://localhost:${API_PORT}/api/v1/docs   (OpenAPI: /api/v1/openapi.json)
  Health         http://localhost:${API_PORT}/health  ·  http://localhost:${API_PORT}/ready
  Socket.IO      $(for p in $GATEWAY_PORTS; do printf 'http://localhost:%s  ' "$p"; done)(any of them: gateways are stateless)
  Gateway health http://localhost:${GATEWAY_PORTS%% *}/ready  ·  metrics http://localhost:${GATEWAY_PORTS%% *}/metrics
  Worker         http://localhost:${WORKER_PORT}/ready  ·  metrics http://localhost:${WORKER_PORT}/metrics
  Redis          ${REDIS_URL}
  Logs           .run/*.log
Stop it with: make down
MSG
