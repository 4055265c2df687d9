#!/usr/bin/env bash
# move-sandbox.sh moves a sandbox from one sandboxd to another: checkpoint it on
# the first, export the snapshot, import it on the second, and start a sandbox
# from it there. Both hosts need the snapshot's base image (sandboxd builds its
# own images the same way everywhere).
#
#   FROM_URL=http://host-a:7070 FROM_KEY=sbx_... \
#   TO_URL=http://host-b:7070   TO_KEY=sbx_...   \
#   docs/examples/move-sandbox.sh SANDBOX_ID
#
# It prints the new sandbox's ID. The e2e tests run it between two sandboxds.
set -euo pipefail
sandbox=${1:?usage: move-sandbox.sh SANDBOX_ID}
sbx=${SBX:-sbx}
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT

snap=$("$sbx" --url "$FROM_URL" --key "$FROM_KEY" snapshot create "$sandbox" --name "move-$sandbox")
"$sbx" --url "$FROM_URL" --key "$FROM_KEY" snapshot export -o "$archive" "$snap"
imported=$("$sbx" --url "$TO_URL" --key "$TO_KEY" snapshot import "$archive")
"$sbx" --url "$TO_URL" --key "$TO_KEY" create --snapshot "$imported"
