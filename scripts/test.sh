#!/usr/bin/env bash
# Runs every test of the project: formatting, clippy, the Rust workspace, then each extra suite in
# scripts/test.d/ (in name order). Each test.d script is self-contained: it installs what it needs and
# exits 0 (passed), 77 (skipped) or anything else (failed). Ends with one "tests: N passed, …" line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}"
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
cargo test --workspace --locked 2>&1 | tee "$LOG"
read -r passed failed < <(awk '/^test result:/ {
  for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
  END { print p + 0, f + 0 }' "$LOG")
# A test.d script exits 0 when it passed, 77 when it had to skip (automake's convention), else failed.
suites=0
skipped=0
for t in scripts/test.d/*.sh; do
  [ -e "$t" ] || continue
  echo "== $t"
  rc=0
  bash "$t" || rc=$?
  case $rc in
    0) suites=$((suites + 1)) ;;
    77) skipped=$((skipped + 1)) ;;
    *) echo "FAILED: $t (exit $rc)" >&2; exit "$rc" ;;
  esac
done
echo
echo "cargo test: $passed passed, $failed failed; scripts/test.d suites: $suites passed, $skipped skipped"
echo "tests: $((passed + suites)) passed, $failed failed, $skipped skipped"
