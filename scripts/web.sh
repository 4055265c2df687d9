#!/usr/bin/env bash
# web.sh installs the web UI's front-end libraries (xterm.js, and Swagger UI
# for /docs) from npm, pinned by web/package-lock.json, and copies the files
# the pages load into web/vendor, where bothy embeds them. Nothing from npm
# is committed.
set -euo pipefail
cd "$(dirname "$0")/../web"
if [ ! -f node_modules/@xterm/xterm/lib/xterm.js ] || [ ! -f node_modules/@xterm/addon-fit/lib/addon-fit.js ] ||
	[ ! -f node_modules/swagger-ui-dist/swagger-ui-bundle.js ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
cp node_modules/@xterm/xterm/lib/xterm.js \
	node_modules/@xterm/xterm/css/xterm.css \
	node_modules/@xterm/addon-fit/lib/addon-fit.js \
	node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	node_modules/swagger-ui-dist/swagger-ui.css \
	vendor/
