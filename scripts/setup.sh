#!/usr/bin/env bash
# Sets up everything on a fresh machine: a venv in .venv with the pinned tools, the client SDK, the server
# with its Rust extension built in release mode, and the tools (edgesel-tools). Safe to run again (it only
# redoes what changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q -e client
# maturin builds core-rs/ into edgesel_server._core and installs the server's runtime dependencies.
echo "setup: building the Rust core (release) and installing the server..."
mkdir -p out
if ! .venv/bin/maturin develop --release > out/setup-build.log 2>&1; then
  tail -40 out/setup-build.log >&2
  echo "setup: the build failed; the whole log is in out/setup-build.log" >&2
  exit 1
fi
.venv/bin/python -c "import edgesel_server._core" || { echo "setup: the Rust extension did not import" >&2; exit 1; }
# The simulator, load test and demo (edgesel-sim, edgesel-bench, edgesel-demo): a distribution of their own that
# depends on the server just installed (so it comes after it), editable like the client.
.venv/bin/python -m pip install -q -e tools
