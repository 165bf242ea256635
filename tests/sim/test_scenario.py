"""Scenario files: the shipped ones load, bad ones fail with a message naming the field."""

from __future__ import annotations

import pytest
import tomllib

from edgesel_tools.sim.scenario import ScenarioError, load_scenario, parse_scenario


def test_shipped_scenarios_load(fleet_path, tiny_path):
    fleet = load_scenario(fleet_path)
    assert 20 <= len(fleet.models) <= 40
    assert sum(m.quantized for m in fleet.models) >= 5
    assert any(m.gflops < 0.1 for m in fleet.models)
    assert fleet.changes and fleet.changes[0].add
    assert fleet.rounds == 20000
    tiny = load_scenario(tiny_path)
    assert len(tiny.models) <= 10


@pytest.fixture
def base(tiny_path):
    with open(tiny_path, "rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d["fleet"]["devices"].update(pixel_99=1.0), "fleet.devices.pixel_99", "unknown device"),
        (lambda d: d["catalog"]["models"].append("resnet9000"), "catalog.models[8]", "unknown model"),
        (lambda d: d["catalog"]["models"].append("resnet50"), "catalog.models[8]", "several weights"),
        (lambda d: d["catalog"]["models"].append("efficientnet_b0"), "catalog.models", "twice"),
        (lambda d: d.update(rounds="many"), "rounds", "integer"),
        (lambda d: d.update(rounds=0), "rounds", "must be in"),
        (lambda d: d.update(roundz=5), "roundz", "unknown field"),
        (lambda d: d["fleet"].update(eligibility="maybe"), "fleet.eligibility", "must be one of"),
        (lambda d: d["fleet"]["devices"].update(pixel_4=-1), "fleet.devices.pixel_4", "must be in"),
        (
            lambda d: d["catalog"]["changes"][0].update(remove=["vgg16"]),
            "catalog.changes[0].remove[0]",
            "not in",
        ),
        (
            lambda d: d["catalog"]["changes"][0].update(add=["efficientnet_b0"]),
            "catalog.changes[0].add[0]",
            "already",
        ),
        (lambda d: d["catalog"]["changes"][0].pop("round"), "catalog.changes[0].round", "required"),
        (
            lambda d: d.update(users={"preference_concentration": [1, 2]}),
            "users.preference_concentration",
            "three",
        ),
        (lambda d: d.update(state={"battery_range": [0.9, 0.1]}), "state.battery_range", "low end"),
        (lambda d: d.update(noise={"rating_sd": float("nan")}), "noise.rating_sd", "must be in"),
        (lambda d: d.update(qoe={"accuracy_floor": 90.0}), "qoe.accuracy_ceiling", "above"),
        (lambda d: d.pop("catalog"), "catalog", "required"),
    ],
)
def test_bad_scenarios_name_the_field(base, mutate, field, message):
    mutate(base)
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(base)
    assert f"'{field}'" in str(exc.value) and message in str(exc.value)


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
