#!/usr/bin/env bash
# Set up (tools/setup.sh) and run the sysext tutorial in examples/sysext/ exactly as the tutorial says.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(tools/setup.sh | tail -n 1)
cd examples/sysext
"$bin/mkosi" summary
