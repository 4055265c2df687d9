#!/usr/bin/env bash
# move-sandbox.sh moves a sandbox from one bothy to another: checkpoint it on
# the first, export the snapshot, import it on the second, and start a sandbox
# from it there. Both hosts need the snapshot's base image (bothy builds its
# own images the same way everywhere).
#
#   FROM_URL=http://host-a:7070 FROM_KEY=bothy_... \
#   TO_URL=http://host-b:7070   TO_KEY=bothy_...   \
#   docs/examples/move-sandbox.sh SANDBOX_ID
#
# It prints the new sandbox's ID. The e2e tests run it between two bothyd servers.
set -euo pipefail
sandbox=${1:?usage: move-sandbox.sh SANDBOX_ID}
bothy=${BOTHY:-bothy}
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT

snap=$("$bothy" --url "$FROM_URL" --key "$FROM_KEY" snapshot create "$sandbox" --name "move-$sandbox")
"$bothy" --url "$FROM_URL" --key "$FROM_KEY" snapshot export -o "$archive" "$snap"
imported=$("$bothy" --url "$TO_URL" --key "$TO_KEY" snapshot import "$archive")
"$bothy" --url "$TO_URL" --key "$TO_KEY" create --snapshot "$imported"
