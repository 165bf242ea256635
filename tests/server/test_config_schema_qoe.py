"""Config parsing, feature normalization and the QoE function, without a server."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgesel_server.config import ConfigError, load_config, parse_config
from edgesel_server.qoe import QoeFunction, RewardError
from edgesel_server.schema import FeatureError, FeatureSchema, FeatureSpec

ROOT = Path(__file__).resolve().parents[2]


def minimal(**space) -> dict:
    sp = {
        "name": "s",
        "device_features": [{"name": "ram_gb", "min": 0.5, "max": 64}],
        "models": [{"id": "m"}],
    }
    sp.update(space)
    return {"space": [sp]}


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "examples/edgesel.toml")
    (space,) = cfg.spaces
    assert space.policy.kind == "qoe_model"
    assert len(space.models) >= 20 and len(space.device_features) == 9
    assert space.device_features[-1].name == "os"  # categorical, detected by the SDK
    assert (space.qoe.accuracy_floor, space.qoe.accuracy_ceiling) == (0.55, 0.88)
    assert cfg.data_dir == ROOT / "examples/../edgesel-data"


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"policy": {"kind": "magic"}}, "space[0].policy.kind"),
        ({"policy": {"alpha": -1.0}}, "alpha >= 0"),
        ({"policy": {"lam": 0}}, "lam > 0"),
        ({"policy": {"alpha": "big"}}, "space[0].policy.alpha must be float"),
        ({"reward_window_s": 0}, "reward_window_s"),
        ({"on_missing_feedback": "shrug"}, "on_missing_feedback"),
        ({"device_features": []}, "at least one device feature"),
        ({"device_features": [{"name": "x", "min": 2, "max": 1}]}, "min < max"),
        ({"device_features": [{"name": "x", "min": 0, "max": 1, "transform": "log"}]}, "log feature"),
        ({"device_features": [{"name": "x", "min": 0, "max": 1, "default": 3}]}, "default"),
        ({"typo_key": 1}, "unknown key(s) in space[0]: typo_key"),
        ({"models": [{"id": ""}]}, "space[0].models[0]"),
        ({"qoe": {"weights": {"vibes": 1.0}}}, "unknown measurements"),
        ({"default_reward": 3.0}, "default_reward"),
        ({"policy": {"half_life": -5}}, "space[0].policy.half_life must be an integer >= 0"),
        ({"policy": {"half_life": 2.5}}, "space[0].policy.half_life must be int"),
        ({"policy": {"half_life": True}}, "space[0].policy.half_life must be int"),
    ],
)
def test_config_errors_name_the_key(patch: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(**patch))
    assert words in str(info.value)


def test_config_requires_spaces_and_unique_names() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        parse_config({})
    data = minimal()
    data["space"].append(dict(data["space"][0]))
    with pytest.raises(ConfigError, match="unique"):
        parse_config(data)


def test_schema_normalizes_to_unit_range() -> None:
    schema = FeatureSchema(
        [
            FeatureSpec("ram_gb", 0.25, 64, "log"),
            FeatureSpec("battery", 0, 100, default=100),
        ]
    )
    v = schema.vector({"ram_gb": 4.0, "unknown_extra": 7.0})
    assert v.dtype == np.float64 and v.shape == (2,)
    assert math.isclose(v[0], math.log(4 / 0.25) / math.log(64 / 0.25))
    assert v[1] == 1.0
    assert schema.vector({"ram_gb": 0.25, "battery": 0})[0] == 0.0
    for bad, words in [({}, "missing"), ({"ram_gb": math.nan}, "finite"), ({"ram_gb": 65}, "outside")]:
        with pytest.raises(FeatureError, match=words):
            schema.vector(bad)
    with pytest.raises(ValueError, match="twice"):
        FeatureSchema([FeatureSpec("a", 0, 1), FeatureSpec("a", 0, 1)])


def test_qoe_function() -> None:
    q = QoeFunction()
    assert q.reward({"user_rating": 5}) == 1.0
    assert q.reward({"user_rating": 1}) == 0.0
    assert math.isclose(q.reward({"latency_ms": 100}), 0.5)  # exactly on budget
    assert math.isclose(q.reward({"latency_ms": 100}, latency_budget_ms=200), 0.75)
    assert q.reward({"latency_ms": 1000}) == 0.0
    assert math.isclose(q.reward({"accuracy": 0.8, "user_rating": 3}), 0.65)
    assert math.isclose(q.reward({"accuracy": 0.8, "user_rating": 3}, weights={"accuracy": 3.0}), 0.725)
    for bad, words in [
        ({}, "neither"),
        ({"user_rating": 0}, "outside"),
        ({"accuracy": 1.5}, "outside"),
        ({"latency_ms": -1}, "negative"),
        ({"latency_ms": math.inf}, "finite"),
        ({"mood": 1}, "unknown"),
    ]:
        with pytest.raises(RewardError, match=words):
            q.reward(bad)
    assert q.check_reward(0.3) == 0.3
    with pytest.raises(RewardError):
        q.check_reward(1.01)


@pytest.mark.parametrize("kind", [None, "qoe_model", "hybrid_linucb", "disjoint_linucb", "lin_ts"])
@pytest.mark.parametrize("half_life", [0, 1, 400, 2**63 - 1])
def test_half_life_is_accepted_for_every_policy(kind: str | None, half_life: int) -> None:
    policy: dict = {"half_life": half_life}
    if kind is not None:
        policy["kind"] = kind
    (space,) = parse_config(minimal(policy=policy)).spaces
    assert space.policy.kind == (kind or "qoe_model")
    assert space.policy.half_life == half_life


@pytest.mark.parametrize("half_life", [-1, 2**63])
def test_half_life_out_of_range_is_rejected_with_qoe_model(half_life: int) -> None:
    with pytest.raises(ConfigError, match=r"space\[0\]\.policy\.half_life must be an integer >= 0"):
        parse_config(minimal(policy={"kind": "qoe_model", "half_life": half_life}))
