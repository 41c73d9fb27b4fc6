#!/usr/bin/env bash
# The chaos suite (services/gateway/tests/chaos/): faults injected while senders and receivers run —
# the worker killed twice, a gateway killed, Redis killed and shut down and started again from its AOF,
# MariaDB stopped for 20 s, a gateway's link to Redis slowed and cut — each followed by the checks that nothing acknowledged was
# lost or doubled, seq stayed gap-free and every receiver got everything once. The stack runs on a
# Redis and a MariaDB of the suite's own (redis-server with AOF and mariadbd, each on a free port
# with a fresh data directory), so stopping them disturbs nothing else.
# Prints the table of what each fault cost (also in target/test-artifacts/chaos.md). `make chaos`
# runs the same.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || { echo "47-chaos: redis-server is missing (scripts/deps.sh installs it)" >&2; exit 1; }
# The suite starts its own Redis; a cluster URL here would make it skip.
export CHAT_TEST_REDIS_URL=redis://127.0.0.1:6379
source scripts/testlib/e2e-env.sh  # DIR, TARGET_DIR, the binaries, npm packages

echo "-- chaos: faults while traffic runs"
timeout 600 node --test --test-concurrency=1 "$DIR/chaos/"
echo "chaos: ok"
