"""Drift in scenarios (`[[drift]]`, sim/drift.py): parsing, the changed ground truth, rounds_to_recover, and
`--half-life` reaching the core policies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesel_server import toml as tomllib
from edgesel_tools.sim.cli import main
from edgesel_tools.sim.drift import Drift, recovery
from edgesel_tools.sim.policies import BanditPolicy, QoeModelPolicy, make_policy
from edgesel_tools.sim.scenario import ScenarioError, build_stream, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]
DRIFT = REPO / "examples" / "scenarios" / "drift.toml"
FLEET = REPO / "examples" / "scenarios" / "fleet.toml"


def with_drift(drift: list[dict]) -> dict:
    data = tomllib.loads(FLEET.read_text())
    data["drift"] = drift
    return data


def test_shipped_drift_scenario_changes_only_the_drifted_pairs_after_the_round() -> None:
    sc = load_scenario(DRIFT)
    (d,) = sc.drifts
    base = parse_scenario({k: v for k, v in tomllib.loads(DRIFT.read_text()).items() if k != "drift"})
    rounds = 16000
    s, s0 = build_stream(sc, rounds), build_stream(base, rounds)
    names = s.device_names
    hit_dev = np.isin(np.array(names)[s.device_index], d.devices)
    cols = np.isin(s.arm_ids, d.models)
    after = np.arange(rounds) >= d.at_round
    changed = s.expected != s0.expected
    assert changed.any()
    assert not changed[~(after & hit_dev)].any(), "the drift leaked to other rounds or devices"
    assert not changed[:, ~cols].any(), "the drift leaked to other models"
    # 10x the latency: never better, and the oracle leaves the int8 models on those phones
    rows = np.flatnonzero(after & hit_dev)
    assert (s.expected[rows][:, cols] <= s0.expected[rows][:, cols] + 1e-12).all()
    best, _ = s.best_expected()
    best0, _ = s0.best_expected()
    assert cols[best0[rows]].mean() > 0.5 > cols[best[rows]].mean()
    # everything else about the stream is the same draw
    np.testing.assert_array_equal(s.contexts, s0.contexts)
    np.testing.assert_array_equal(s.reward[~(after & hit_dev)], s0.reward[~(after & hit_dev)])


def test_failing_drift_crashes_the_pairs() -> None:
    sc = parse_scenario(
        with_drift([{"at_round": 100, "device_kind": "sbc", "models": ["mnasnet0_5"], "fails": True}])
    )
    s = build_stream(sc, 400)
    j = s.arm_ids.index("mnasnet0_5")
    kinds = np.array([d.kind for d in sc.devices])[s.device_index]
    rows = (np.arange(400) >= 100) & (kinds == "sbc")
    assert rows.any()
    assert (s.expected[rows, j] == 0).all() and (s.reward[rows, j] == 0).all() and not s.fits[rows, j].any()
    assert (s.expected[~rows, j] > 0).any()


@pytest.mark.parametrize(
    ("drift", "words"),
    [
        ([{"devices": ["pixel_3"], "latency_factor": 2.0}], "drift[0].at_round"),
        ([{"at_round": 5, "devices": ["toaster"], "latency_factor": 2.0}], "is not in fleet.devices"),
        ([{"at_round": 5, "device_kind": "fridge", "latency_factor": 2.0}], "drift[0].device_kind"),
        ([{"at_round": 5, "models": ["nope"], "latency_factor": 2.0}], "is not in the catalog"),
        ([{"at_round": 5, "latency_factor": 0}], "drift[0].latency_factor"),
        ([{"at_round": 5}], "changes nothing"),
        ([{"at_round": 5, "fails": "yes"}], "drift[0].fails"),
        ([{"at_round": 5, "fails": True, "colour": 1}], "drift[0].colour"),
        ({"at_round": 5}, "[[drift]]"),
    ],
)
def test_drift_errors_name_the_field(drift, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(with_drift(drift))
    assert words in str(info.value)


def test_recovery_counts_rounds_to_the_first_window_at_90_percent_of_the_oracle() -> None:
    d = Drift(at_round=1000, devices=("x",), latency_factor=2.0)
    rows = np.arange(0, 4000, 2)  # every second round is a drifted device's request
    oracle = np.ones(4000)
    got = np.ones(4000)
    got[1000:1600] = 0.5  # bad for 600 rounds after the drift (300 affected requests)
    out = recovery(d, rows, got, oracle, window=100, share=0.9)
    # windows of 100 affected requests (200 rounds), each bad one costing 0.5: >= 90 % once at most 20 of
    # the 100 are bad; the window ending at affected request k (round 1000 + 2k) holds 399 - k of the bad
    # requests 0..299 -> k = 379
    assert out["rounds_to_recover"] == 2 * 379
    assert out["ratio_before"] == 1.0 and out["ratio_min"] == 0.5
    never = recovery(d, rows, np.where(np.arange(4000) >= 1000, 0.5, 1.0), oracle, window=100)
    assert never["rounds_to_recover"] is None


def test_half_life_reaches_the_core_policies() -> None:
    s = build_stream(load_scenario(REPO / "examples" / "scenarios" / "tiny.toml"), 50)
    p = make_policy("hybrid_linucb", s, half_life=123)
    assert isinstance(p, BanditPolicy) and p.bandit.half_life == 123
    assert make_policy("disjoint_linucb", s).bandit.half_life == 0  # type: ignore[attr-defined]
    for name in ("qoe_model", "qoe_model_conservative"):  # the default policy forgets too
        q = make_policy(name, s, half_life=77)
        assert isinstance(q, QoeModelPolicy) and q.model.half_life == 77
    assert make_policy("qoe_model", s).model.half_life == 0  # type: ignore[attr-defined]


def test_cli_reports_rounds_to_recover_with_and_without_forgetting(tmp_path: Path) -> None:
    out = {}
    for hl in (0, 100):
        args = ["run", "--scenario", str(DRIFT), "--rounds", "17000", "--policies", "oracle,disjoint_linucb"]
        rc = main([*args, "--half-life", str(hl), "--out", str(tmp_path / str(hl)), "--no-plot", "--quiet"])
        assert rc == 0
        rep = json.loads((tmp_path / str(hl) / "report.json").read_text())
        assert rep["settings"]["half_life"] == hl
        out[hl] = rep["policies"]["disjoint_linucb"]
        assert out[hl]["drift_recovery"][0]["at_round"] == 15000
    # forgetting recovers (within the 2,000 rounds after the drift); without it the policy does not
    assert out[0]["rounds_to_recover"] is None
    assert out[100]["rounds_to_recover"] is not None and out[100]["rounds_to_recover"] < 2000
