"""The server distribution stands alone: no module of edgesel_server imports the tools (simulator, load test,
demo: the edgesel-tools distribution) or matplotlib, and the server's metadata pulls in neither."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from edgesel_server.toml import loads as toml_loads

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the installed edgesel_server package in a fresh interpreter, then reports which of
# them it found and whether anything of the tools or matplotlib got loaded on the way.
_IMPORT_ALL = """
import importlib, importlib.util, json, pkgutil, sys
import edgesel_server
names = sorted(m.name for m in pkgutil.walk_packages(edgesel_server.__path__, "edgesel_server."))
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "modules": names,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "edgesel_tools")),
    "old_paths": [n for n in ("sim", "bench", "demo", "data")
                  if importlib.util.find_spec("edgesel_server." + n) is not None],
}))
"""


def test_no_server_module_imports_the_tools_or_matplotlib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    found = json.loads(out)
    # The walk really saw the server (not an empty or foreign package).
    assert {"edgesel_server.cli", "edgesel_server.servicers", "edgesel_server._core"} <= set(found["modules"])
    assert any(m.startswith("edgesel_server.store.") for m in found["modules"])
    assert found["loaded"] == []
    # Nothing is left at the old places (a stray directory would still import as a namespace package).
    assert found["old_paths"] == []


def _project(pyproject: Path) -> dict:
    return toml_loads(pyproject.read_text())["project"]


def test_server_metadata_needs_neither_matplotlib_nor_the_tools() -> None:
    project = _project(ROOT / "pyproject.toml")
    names = [dep.split(";")[0].split("=")[0].split(">")[0].strip() for dep in project["dependencies"]]
    assert "matplotlib" not in names and "edgesel-tools" not in names
    assert set(project["scripts"]) == {"edgesel-server"}
    # The installed metadata (what pip would resolve) agrees with the file.
    installed = importlib.metadata.requires("edgesel-server") or []
    assert not [r for r in installed if r.startswith(("matplotlib", "edgesel-tools"))]


def test_tools_provide_the_simulator_bench_and_demo_commands() -> None:
    project = _project(ROOT / "tools" / "pyproject.toml")
    assert project["scripts"] == {
        "edgesel-sim": "edgesel_tools.sim.cli:main",
        "edgesel-bench": "edgesel_tools.bench.cli:main",
        "edgesel-demo": "edgesel_tools.demo:main",
    }
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    for name, target in project["scripts"].items():
        assert installed.get(name) == target, name
    requires = importlib.metadata.requires("edgesel-tools") or []
    assert any(r.startswith("matplotlib") for r in requires)
