from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from edgesel_tools.sim.replay import write_random_log
from edgesel_tools.sim.scenario import build_stream, parse_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "examples" / "scenarios"


@pytest.fixture(scope="session")
def fleet_path() -> Path:
    return SCENARIOS / "fleet.toml"


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    return SCENARIOS / "tiny.toml"


@pytest.fixture(scope="session")
def stationary(tiny_path):
    """tiny.toml without its catalog change: replay time and online time then see the same catalog."""
    with open(tiny_path, "rb") as fh:
        data = tomllib.load(fh)
    data["catalog"].pop("changes")
    return parse_scenario(data)


@pytest.fixture(scope="session")
def logged(stationary, tmp_path_factory):
    """A uniformly random logging policy's 24,000 decisions on `stationary`: (stream, log path)."""
    stream = build_stream(stationary, rounds=24_000)
    path = tmp_path_factory.mktemp("log") / "log.jsonl"
    write_random_log(stream, path)
    return stream, path
