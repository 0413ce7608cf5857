#!/usr/bin/env bash
# Set up (tools/setup.sh) and run the sysext tutorial in examples/sysext/ as it is written:
# `mkosi genkey` (once; an existing key is kept), then `mkosi -f`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(tools/setup.sh | tail -n 1)
cd examples/sysext
[ -e mkosi.key ] || "$bin/mkosi" genkey
"$bin/mkosi" -f
ls -l mkosi.output
