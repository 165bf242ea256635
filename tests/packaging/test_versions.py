"""One version for every distribution: core-rs/Cargo.toml's [package] version. maturin (edgesel-server)
reads it itself; hatchling (edgesel-client, edgesel-tools) reads it with a regex; the packages' __version__
come from the installed metadata. The one place no build tool can fill in is the server's exact pin on the
client (maturin has no dynamic dependencies): checked here."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import edgesel_client
import edgesel_server
import edgesel_tools
from edgesel_server import core
from edgesel_server.toml import loads as toml_loads

ROOT = Path(__file__).resolve().parents[2]
CARGO = ROOT / "core-rs" / "Cargo.toml"
VERSION = toml_loads(CARGO.read_text())["package"]["version"]
PYPROJECTS = {
    "edgesel-server": ROOT / "pyproject.toml",
    "edgesel-client": ROOT / "client" / "pyproject.toml",
    "edgesel-tools": ROOT / "tools" / "pyproject.toml",
}
PACKAGES = {
    "edgesel-server": edgesel_server,
    "edgesel-client": edgesel_client,
    "edgesel-tools": edgesel_tools,
}


def _pyproject(name: str) -> dict:
    return toml_loads(PYPROJECTS[name].read_text())


def test_no_pyproject_writes_a_version_of_its_own() -> None:
    for name in PYPROJECTS:
        project = _pyproject(name)["project"]
        assert "version" not in project, name
        assert "version" in project["dynamic"], name


def test_hatch_projects_read_cargo_toml() -> None:
    for name in ("edgesel-client", "edgesel-tools"):
        source = _pyproject(name)["tool"]["hatch"]["version"]
        assert (PYPROJECTS[name].parent / source["path"]).resolve() == CARGO, name
        match = re.search(source["pattern"], CARGO.read_text(), flags=re.MULTILINE)
        assert match is not None and match.group("version") == VERSION, name


def test_installed_distributions_and_modules_carry_the_version() -> None:
    for name, package in PACKAGES.items():
        assert importlib.metadata.version(name) == VERSION, name
        assert package.__version__ == VERSION, name
        # __version__ comes from the metadata, not from a literal in the package.
        assert VERSION not in Path(package.__file__).read_text(), name
    assert core.__version__ == VERSION  # compiled in from Cargo.toml (env!("CARGO_PKG_VERSION"))


def test_pins_between_distributions_are_the_version() -> None:
    server_deps = _pyproject("edgesel-server")["project"]["dependencies"]
    assert [d for d in server_deps if d.startswith("edgesel-client")] == [f"edgesel-client=={VERSION}"]
    tools_requires = importlib.metadata.requires("edgesel-tools") or []
    assert [r for r in tools_requires if r.startswith("edgesel-server")] == [f"edgesel-server=={VERSION}"]
