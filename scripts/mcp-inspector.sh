#!/usr/bin/env bash
# mcp-inspector.sh installs the MCP Inspector, pinned by
# mcp/inspector/package-lock.json, for the test that drives bothy's /mcp
# with its CLI (e2e/mcp_inspector_test.go). Nothing from npm is committed.
set -euo pipefail
cd "$(dirname "$0")/../mcp/inspector"
if [ ! -f node_modules/@modelcontextprotocol/inspector/package.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
