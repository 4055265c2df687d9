#!/usr/bin/env bash
# openapi-ts.sh installs openapi-typescript and TypeScript, pinned by
# openapi/ts/package-lock.json, for the test that a client generated from the
# OpenAPI document compiles (openapi/ts_test.go). Nothing from npm is committed.
set -euo pipefail
cd "$(dirname "$0")/../openapi/ts"
if [ ! -f node_modules/openapi-typescript/package.json ] || [ ! -f node_modules/typescript/package.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
