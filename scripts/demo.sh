#!/usr/bin/env bash
# Sets up everything, then runs the demo: a real server on the embedded store with the example catalog,
# driven by a simulated fleet through the client SDK; prints how QoE improved and where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edgesel-demo "$@"  # edgesel-tools (tools/edgesel_tools/demo.py)
