"""Peers (Vowpal Wabbit, MABWiser) on the real-measurement scenario, the comparison harness, and the policy
registry that a new policy plugs into by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesel_tools.sim import policies as pol
from edgesel_tools.sim.cli import main
from edgesel_tools.sim.compare import compare
from edgesel_tools.sim.policies import Feedback, Request
from edgesel_tools.sim.report import build_report
from edgesel_tools.sim.runner import run
from edgesel_tools.sim.scenario import build_stream, load_scenario

from .conftest import SCENARIOS

AIHUB = SCENARIOS / "aihub.toml"


@pytest.fixture(scope="module")
def stream():
    return build_stream(load_scenario(AIHUB), 400)


@pytest.mark.parametrize("name", pol.PEER_POLICIES)
def test_each_peer_runs_on_the_real_scenario(stream, name):
    first, again = run(stream, [name, name])
    assert np.array_equal(first.picks, again.picks)  # seeded: the same stream gives the same picks
    m = build_report(stream, [first])["policies"][name]
    assert 0.0 < m["mean_qoe"] < build_report(stream, run(stream, ["oracle"]))["oracle_mean_qoe"]
    assert 0.0 <= m["failure_rate"] < 0.5
    assert len({stream.arm_ids[j] for j in first.picks}) > 10  # it explores the catalog


@pytest.mark.parametrize("name", pol.PEER_POLICIES)
def test_each_peer_learns_where_learning_is_quick(tiny_path, name):
    """On the small formula scenario (5 devices, 8 models) every peer clearly beats random after 500 rounds,
    so the adapters feed the libraries the right contexts, actions and rewards."""
    st = build_stream(load_scenario(tiny_path), 1000)
    peer, rand = run(st, [name, "random"])
    t = np.arange(500, 1000)
    assert st.expected[t, peer.picks[500:]].mean() > st.expected[t, rand.picks[500:]].mean() + 0.1


def test_mabwiser_updated_every_decision_makes_the_cores_disjoint_linucb_picks(tiny_path, monkeypatch):
    """Two independent implementations of disjoint LinUCB (same α, λ, tie rule) agree pick for pick: a check
    of the adapter and of the core at once. (In comparisons MABWiser learns in batches, see sim/peers.py.)"""
    from edgesel_tools.sim import peers

    monkeypatch.setattr(peers, "MABWISER_BATCH", 1)
    st = build_stream(load_scenario(tiny_path), 300)
    mab, core = run(st, ["mabwiser_linucb", "disjoint_linucb"])
    assert np.array_equal(mab.picks, core.picks)
    assert len(set(core.picks.tolist())) == 8


def test_comparison_horizons_are_prefixes_of_one_run():
    sc = load_scenario(AIHUB)
    res = compare(sc, ["oracle", "common_model", "hybrid_linucb", "random"], [200, 400], [3, 4])
    assert res["horizons"] == [200, 400] and res["seeds"] == [3, 4]
    for h in ("200", "400"):
        table = res["results"][h]["policies"]
        assert table["oracle"]["cumulative_regret"]["max"] == 0.0
        assert table["common_model"]["regret_vs_common_model"]["mean"] == 1.0
        assert 0.15 < res["results"][h]["pair_failure_rate"]["mean"] < 0.25
        for m in table.values():
            assert m["mean_qoe"]["min"] <= m["mean_qoe"]["mean"] <= m["mean_qoe"]["max"]
    # The 200-round figures are the first 200 rounds of the 400-round run of the same seed.
    st = build_stream(sc, 400, 3)
    full = build_report(st, run(st, ["hybrid_linucb"]))["policies"]["hybrid_linucb"]
    at_200 = dict(full["regret_checkpoints"])[200]
    assert res["results"]["200"]["by_seed"]["3"]["policies"]["hybrid_linucb"]["cumulative_regret"] == at_200


def test_a_registered_policy_joins_by_name_and_gets_the_measurements(monkeypatch, stream):
    """Adding a policy is one entry in POLICY_FACTORIES; on a measured stream it sees the request's
    preferences and, with update_feedback, each Feedback's measurements and whether the model ran."""
    seen: list[tuple[Request, str, Feedback]] = []

    class Greedy:
        name = "greedy_latency"

        def add_arm(self, arm_id, features):
            pass

        def remove_arm(self, arm_id):
            pass

        def select(self, request):
            return request.eligible[request.round % len(request.eligible)]

        def update(self, request, arm_id, reward):
            raise AssertionError("update_feedback takes precedence")

        def update_feedback(self, request, arm_id, feedback):
            seen.append((request, arm_id, feedback))

    monkeypatch.setitem(pol.POLICY_FACTORIES, "greedy_latency", lambda n, c: Greedy())
    res = compare(stream.scenario, ["oracle", "greedy_latency"], [100], [5])
    assert "greedy_latency" in res["results"]["100"]["policies"]
    assert len(seen) == 100
    failed = [fb for _, _, fb in seen if fb.failed]
    ran = [fb for _, _, fb in seen if not fb.failed]
    assert failed and ran
    assert all(fb.reward == 0.0 and fb.measurements == {} for fb in failed)
    assert all(fb.measurements["latency_ms"] > 0 and 0.5 < fb.measurements["accuracy"] < 0.9 for fb in ran)
    req = seen[0][0]
    assert req.prefs is not None and req.prefs["latency_budget_ms"] > 0
    assert set(req.prefs["qoe_weights"]) == {"accuracy", "latency_ms", "user_rating"}


def test_cli_compare_writes_tables(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--scenario", str(AIHUB), "--rounds", "100,200", "--seeds", "2", "--quiet"]
    argv += ["--policies", "oracle,common_model,lin_ts,random", "--out", str(out)]
    assert main(argv) == 0
    res = json.loads((out / "compare.json").read_text())
    assert set(res["results"]) == {"100", "200"}
    assert (out / "compare.png").stat().st_size > 10_000
    curve = res["regret_curves"]["random"]
    assert curve[-1][0] == 200 and curve[-1][1] > curve[0][1] > 0
    assert res["regret_curves"]["oracle"][-1][1:] == [0.0, 0.0]
    md = (out / "compare.md").read_text()
    assert "| lin_ts |" in md and "**200 rounds**" in md
    assert main(["compare", "--scenario", str(AIHUB), "--policies", "nope", "--out", str(out)]) == 2
