#!/usr/bin/env bash
# Installs the web client's npm packages (npm ci, skipped while node_modules matches package-lock.json)
# and builds web/dist (node build.mjs). Used by `make up` and scripts/test.d/60-web.sh.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "web: Node.js and npm are needed to build the web client (scripts/deps.sh installs them)" >&2
  exit 1
fi
STAMP=node_modules/.chat-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "web: npm ci"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
  echo "$want" >"$STAMP"
fi
node build.mjs
