#!/usr/bin/env bash
# e2b-sdk.sh installs E2B's JS SDK, pinned by compat/e2b/sdk/package-lock.json,
# for the compatibility test (e2e/e2b_test.go). Nothing from npm is committed.
set -euo pipefail
cd "$(dirname "$0")/../compat/e2b/sdk"
if [ ! -f node_modules/e2b/package.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
