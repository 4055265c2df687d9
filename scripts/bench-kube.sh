#!/usr/bin/env bash
# The Kubernetes section of make bench (issue 25): brings the single-node
# cluster of scripts/kube.sh up, measures bothy on it beside its baselines
# on the same cluster, and takes the cluster down again whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}

# Down whatever happens, a failed up included.
trap 'bash scripts/kube.sh down' EXIT
bash scripts/kube.sh up
eval "$(bash scripts/kube.sh env)"
$GO run ./bench -bothyd "$BIN/bothyd" -agent "$BIN/bothy-agent" -only kube
