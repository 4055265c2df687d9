#!/usr/bin/env bash
# browser.sh makes sure Debian's chromium is installed, for the browser tests.
# Idempotent: does nothing when chromium is already on PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "browser: chromium is missing and this is not root: apt-get install chromium" >&2
	exit 1
fi
echo "browser: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
