#!/usr/bin/env bash
# The Pythons that devices and servers run, beyond the development venv (CPython 3.11, latest runtimes):
#   - the SDK on the oldest CPython it supports (3.8) with the FLOOR versions of grpcio and protobuf (the ones
#     stamped into the generated code, client/edgesel/__init__.py), tests/client against a real server;
#   - the SDK on the newest CPython present with the newest grpcio/protobuf, the same tests;
#   - the server wheel on CPython 3.10 (its floor): install (neither matplotlib nor the tools come with it),
#     `edgesel-server --help`, start, one Select + Feedback, graceful stop; then the tools (./tools) installed
#     into the same venv: edgesel-sim / edgesel-bench / edgesel-demo --help and a short simulator run.
# Interpreters come from pyenv (PYENV_ROOT, default /root/.pyenv). A job whose interpreter is missing is
# reported as NOT RUN, never as passed. Called by scripts/test.sh after setup (needs .venv and the built core).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYENV_VERSIONS="${PYENV_ROOT:-/root/.pyenv}/versions"
VENVS=out/pythons
mkdir -p "$VENVS" out/wheels
export EDGESEL_SERVER_PYTHON="$ROOT/.venv/bin/python"  # the server itself needs 3.10+ and the Rust core
PIP_FLAGS=(-q --disable-pip-version-check)
SUMMARY=()

interpreter() {  # the newest installed patch release of CPython $1 (e.g. 3.8), or nothing
  ls -d "$PYENV_VERSIONS/$1".* 2>/dev/null | sort -V | tail -1
}

newest_interpreter() {
  ls -d "$PYENV_VERSIONS"/3.* 2>/dev/null | grep -E '/3\.[0-9]+\.[0-9]+$' | sort -V | tail -1
}

fresh_venv() {  # fresh_venv NAME PYTHON_PREFIX: an empty venv, remade on every run so old installs never linger
  rm -rf "${VENVS:?}/$1"
  "$2/bin/python" -m venv "$VENVS/$1"
  "$VENVS/$1/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
}

sdk_job() {  # sdk_job NAME PYTHON_PREFIX [pip requirement pins...]: install the SDK, run tests/client
  local name=$1 prefix=$2
  shift 2
  fresh_venv "$name" "$prefix" || return 1
  local py="$VENVS/$name/bin/python"
  # Pins first, then the SDK from source (as a device would, building with hatchling on that Python).
  "$py" -m pip install "${PIP_FLAGS[@]}" --only-binary grpcio,protobuf "$@" -r requirements-sdk-test.txt || return 1
  "$py" -m pip install "${PIP_FLAGS[@]}" --only-binary grpcio,protobuf ./client || return 1
  local versions
  versions=$("$py" -c 'import platform, grpc, google.protobuf as pb; print(f"CPython {platform.python_version()}, grpcio {grpc.__version__}, protobuf {pb.__version__}")')
  echo "-- $name: $versions"
  if "$py" -m pytest -q -p no:cacheprovider --junitxml="$ROOT/out/junit/$name.xml" tests/client; then
    SUMMARY+=("$name ($versions): passed")
  else
    SUMMARY+=("$name ($versions): FAILED")
    return 1
  fi
}

status=0

oldest=$(interpreter 3.8)
if [ -n "$oldest" ]; then
  floors=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "client"); import edgesel; print(f"grpcio=={edgesel.MIN_GRPCIO} protobuf=={edgesel.MIN_PROTOBUF}")')
  echo "== SDK on the oldest Python with the floor runtimes ($floors)"
  # shellcheck disable=SC2086  # $floors is two requirement words
  sdk_job sdk-oldest-floors "$oldest" $floors || status=1
else
  echo "!! SDK on CPython 3.8 with the floor runtimes: NOT RUN (no $PYENV_VERSIONS/3.8.*) -- NOT counted as passed"
  SUMMARY+=("sdk-oldest-floors: NOT RUN (no CPython 3.8 under $PYENV_VERSIONS)")
fi

newest=$(newest_interpreter)
if [ -n "$newest" ]; then
  echo "== SDK on the newest Python present with the newest runtimes"
  sdk_job sdk-newest "$newest" --upgrade grpcio protobuf || status=1
else
  echo "!! SDK on the newest Python: NOT RUN (no CPython under $PYENV_VERSIONS) -- NOT counted as passed"
  SUMMARY+=("sdk-newest: NOT RUN (no CPython under $PYENV_VERSIONS)")
fi

py310=$(interpreter 3.10)
if [ -n "$py310" ]; then
  echo "== server wheel on CPython 3.10"
  # The extension is abi3-py310: this wheel serves every CPython >= 3.10. maturin reuses setup's release
  # build, so this only packages it.
  rm -f out/wheels/edgesel_server-*.whl
  .venv/bin/maturin build --release -o out/wheels > out/wheel-build.log 2>&1 || { tail -20 out/wheel-build.log; exit 1; }
  fresh_venv server-3.10 "$py310"
  # The SDK is not on an index: install it from source first, then the wheel; tomli at its declared floor.
  "$VENVS/server-3.10/bin/python" -m pip install "${PIP_FLAGS[@]}" ./client
  "$VENVS/server-3.10/bin/python" -m pip install "${PIP_FLAGS[@]}" out/wheels/edgesel_server-*.whl "tomli==2.0.1"
  if "$VENVS/server-3.10/bin/python" scripts/server_smoke.py; then
    echo passed > "$ROOT/out/junit/server-3.10.result"
    SUMMARY+=("server-3.10 (CPython $("$py310/bin/python" -c 'import platform; print(platform.python_version())')): passed")
  else
    echo failed > "$ROOT/out/junit/server-3.10.result"
    SUMMARY+=("server-3.10: FAILED")
    status=1
  fi
  # The tools from source as an operator would install them next to the server wheel (a real wheel build by
  # hatchling, not editable): their dependency edgesel-server is the wheel above, matplotlib comes from PyPI.
  if "$VENVS/server-3.10/bin/python" -m pip install "${PIP_FLAGS[@]}" ./tools \
    && "$VENVS/server-3.10/bin/python" scripts/server_smoke.py --tools; then
    echo passed > "$ROOT/out/junit/tools-3.10.result"
    SUMMARY+=("tools-3.10 (next to the server wheel): passed")
  else
    echo failed > "$ROOT/out/junit/tools-3.10.result"
    SUMMARY+=("tools-3.10: FAILED")
    status=1
  fi
else
  echo "!! server wheel and tools on CPython 3.10: NOT RUN (no $PYENV_VERSIONS/3.10.*) -- NOT counted as passed"
  SUMMARY+=("server-3.10, tools-3.10: NOT RUN (no CPython 3.10 under $PYENV_VERSIONS)")
fi

echo "== Python versions:"
printf '   %s\n' "${SUMMARY[@]}"
exit $status
