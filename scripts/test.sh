#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace, then each extra suite in scripts/test.d/ (in name
# order). Each test.d script is self-contained: it installs what it needs and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}"
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
cargo test --workspace --locked
for t in scripts/test.d/*.sh; do
  [ -e "$t" ] || continue
  echo "== $t"
  bash "$t"
done
