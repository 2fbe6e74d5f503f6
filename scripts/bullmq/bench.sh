#!/usr/bin/env bash
# BullMQ 5 on the same Redis, for the comparison in docs/performance.md: installs the pinned bullmq
# (package.json) into .tools/bullmq with npm on first use, then runs bench.js.
#   scripts/bullmq/bench.sh [--redis URL] [--duration S] [--producers N] [--concurrency N]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/../../.tools/bullmq"
if [[ ! -d $tools/node_modules/bullmq ]]; then
  mkdir -p "$tools"
  cp "$here/package.json" "$tools/"
  (cd "$tools" && npm install --no-audit --no-fund --silent)
fi
NODE_PATH="$tools/node_modules" exec node "$here/bench.js" "$@"
