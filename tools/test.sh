#!/usr/bin/env bash
# Set up (tools/setup.sh) and run the checks and tests: ruff, mypy, then pytest with any extra arguments.
# The default suite includes the integration tests (real builds from Debian's mirror); pass
# `-m "not integration"` for the fast suite that needs neither root nor network.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(tools/setup.sh | tail -n 1)
"$bin/ruff" check src tests benchmarks tools
"$bin/mypy"
"$bin/python" -m pytest "$@"
