#!/usr/bin/env bash
# The Kubernetes tier of bothy's tests (issue 25): brings the single-node
# cluster of scripts/kube.sh up, runs every test named Kube* against it, and
# takes the cluster down again whatever happened, leaving nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Down whatever happens, a failed up included.
trap 'bash scripts/kube.sh down' EXIT
bash scripts/kube.sh up
eval "$(bash scripts/kube.sh env)"
export BOTHY_REQUIRE_KUBE=1 BOTHY_REQUIRE_DOCKER=1
$GO test -race -count=1 -timeout 30m -run 'Kube' ./runtime/... ./e2e/...
