from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "examples" / "scenarios"


@pytest.fixture(scope="session")
def fleet_path() -> Path:
    return SCENARIOS / "fleet.toml"


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    return SCENARIOS / "tiny.toml"
