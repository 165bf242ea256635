#!/usr/bin/env bash
# Runs every check on a fresh machine: installs what is needed (Debian packages, Python tools, the Rust
# extension), then Rust tests and lints, Python lints, the generated-code check, the pytest suite, and the
# SDK and server on the other Python versions (scripts/test_pythons.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: redis-server (multi-replica tests), openssl (throwaway TLS certs),
# chromium and a font for its text (the status page loaded and screenshotted in a headless browser).
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium fonts-liberation"
if [ -n "$missing" ]; then
  echo "== installing Debian packages:$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

echo "== setup"
bash scripts/setup.sh

echo "== cargo fmt / clippy / test"
(cd core-rs && cargo fmt --check && cargo clippy --all-targets -q -- -D warnings && cargo clippy --all-targets --features python -q -- -D warnings && cargo test -q)

echo "== ruff / mypy / stubtest / generated protobuf code / generated sync client"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m mypy  # the server, the client and the tools ([tool.mypy] files)
.venv/bin/python -m mypy.stubtest edgesel_server._core
.venv/bin/python scripts/gen_protos.py --check
.venv/bin/python scripts/unasync.py --check

echo "== pytest"
rm -rf out/junit && mkdir -p out/junit
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=out/junit/main.xml "$@"

# The SDK on CPython 3.8 with its floor runtimes and on the newest CPython, the server wheel on 3.10.
pythons=0
bash scripts/test_pythons.sh || pythons=$?

echo "== all tests (main suite + other Pythons)"
.venv/bin/python scripts/test_summary.py out/junit
exit $pythons
