"""The live lift check (sim/lift_check.py): its ground truth μ is the mean of the simulator's own reward
draws, and one short live run through a real server compares the report's CI (read with GetSpaceReport)
with a true lift computed from that ground truth over the server's own groups. The 20-seed coverage rate is
reported by `edgesel-sim live-lift`, not asserted here (docs/holdout.md has the numbers)."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server.holdout import in_holdout
from edgesel_server.lift import Outcomes, lift
from edgesel_server.toml import loads as toml_loads
from edgesel_tools.sim.lift_check import (
    check_seed,
    cluster_robust_ci,
    default_incumbent,
    expected_clip01,
    true_qoe,
)
from edgesel_tools.sim.live_measured import installation_id
from edgesel_tools.sim.measured import parse_measured
from edgesel_tools.sim.scenario import build_stream, load_scenario

from .conftest import SCENARIOS

AIHUB = SCENARIOS / "aihub.toml"


@settings(max_examples=100, deadline=None)
@given(st.floats(-1.5, 2.5), st.floats(0.0, 0.6))
def test_expected_clip_equals_a_numpy_integral(m: float, sd: float) -> None:
    z = np.linspace(-12.0, 12.0, 400_001)
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    f = np.clip(m + sd * z, 0.0, 1.0) * density
    want = float(np.sum(f[1:] + f[:-1]) * (z[1] - z[0]) / 2)  # trapezoid rule
    assert abs(expected_clip01(m, sd) - want) <= 1e-8


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6))
def test_cluster_robust_ci_equals_a_loop_reference_and_welch_for_singletons(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    y, pol = rng.random(n), np.arange(n) % 3 != 0
    clusters = rng.integers(0, n // size, n)
    ref_var, diff = 0.0, 0.0
    for sign, mask in ((1, pol), (-1, ~pol)):
        ys, cs = y[mask], clusters[mask]
        mean, ids = ys.mean(), sorted(set(cs.tolist()))
        ssq = sum((ys[cs == c] - mean).sum() ** 2 for c in ids)
        ref_var += len(ids) / (len(ids) - 1) * ssq / len(ys) ** 2
        diff += sign * mean
    lo, hi = cluster_robust_ci(y, pol, clusters)
    assert math.isclose((lo + hi) / 2, diff, abs_tol=1e-12)
    assert math.isclose((hi - lo) / 2, 1.959963984540054 * math.sqrt(ref_var), rel_tol=1e-9)
    # one observation per installation: exactly the report's Welch interval
    cells = {True: Outcomes(), False: Outcomes()}
    for v, p in zip(y, pol, strict=True):
        cells[bool(p)].add(float(v), None, False)
    welch = lift(cells[True], cells[False])
    assert welch is not None
    got = cluster_robust_ci(y, pol, np.arange(n))
    assert np.allclose(got, welch.ci95, rtol=0, atol=1e-12)


def small_fleet(**users: float):
    """The AI Hub scenario with two device instances and six variants: each (instance, arm) is drawn
    thousands of times, so the mean of the simulator's own rewards pins μ down."""
    data = toml_loads(AIHUB.read_text())
    data["fleet"] = {"size": 2, "devices": "all"}
    data["catalog"] = {"models": ["mobilenet_v4:w8a8", "resnet50:float", "vit:w8a16", "squeezenet1_1:w8a8",
                                  "efficientnet_b0:float", "convnext_tiny:w8a8"]}  # fmt: skip
    data["users"] = {**data["users"], **users}
    return parse_measured(data, base_dir=AIHUB.parent)


def test_true_qoe_is_the_mean_of_the_simulators_reward_draws() -> None:
    for users in ({}, {"rating_probability": 1.0}, {"rating_probability": 0.0}):
        sc = small_fleet(**users)
        stream = build_stream(sc, 30_000, 5)
        fb = stream.feedback
        assert fb is not None and fb.instance is not None
        bias_seen = 0.0
        for inst in np.unique(fb.instance):
            rows = np.flatnonzero(fb.instance == inst)
            for j in range(len(stream.arm_ids)):
                draws = stream.reward[rows, j]
                mu = true_qoe(stream, sc.space.qoe, int(rows[0]), j)
                se = draws.std() / math.sqrt(draws.size)
                assert abs(mu - draws.mean()) <= 4.5 * se + 1e-12, (users, inst, stream.arm_ids[j])
                bias_seen = max(bias_seen, abs(stream.expected[rows[0], j] - draws.mean()) / max(se, 1e-12))
        # the nominal `expected` is not this mean (why lift_check does not use it as the truth)
        assert bias_seen > 6, users


def test_a_short_live_run_compares_the_report_ci_with_the_true_lift(tmp_path) -> None:
    sc = load_scenario(AIHUB)
    incumbent = default_incumbent(sc)
    assert incumbent == "mobilenet_v4:w8a8"
    rounds, share = 500, 0.2
    c = check_seed(sc, 3, tmp_path, rounds=rounds, holdout_model=incumbent, holdout_share=share)
    # The groups come from the server's own log; recompute them from the holdout's hash rule.
    stream = build_stream(sc, rounds, 3)
    fb = stream.feedback
    assert fb is not None and fb.instance is not None
    held = [in_holdout(sc.space.name, installation_id(3, int(i)), share) for i in fb.instance]
    assert (c.n_policy, c.n_holdout) == (rounds - sum(held), sum(held)) and c.n_holdout > 50
    # The true lift from the ground truth over the logged picks, computed here independently of check_seed.
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    picks = [d["arm"] for d in lines if d["type"] == "decision"]
    assert len(picks) == rounds and all(p == incumbent for p, h in zip(picks, held, strict=True) if h)
    mu = [true_qoe(stream, sc.space.qoe, t, stream.arm_ids.index(a)) for t, a in enumerate(picks)]
    pol = np.mean([m for m, h in zip(mu, held, strict=True) if not h])
    hold = np.mean([m for m, h in zip(mu, held, strict=True) if h])
    assert math.isclose(c.true_lift, pol - hold, rel_tol=1e-12, abs_tol=1e-12)
    # The CI is the live report's Welch interval around its estimate; covered is just the comparison.
    assert c.ci_low < c.report_lift < c.ci_high and c.report_lift != c.true_lift
    assert c.covered == (c.ci_low <= c.true_lift <= c.ci_high)
    realized = stream.reward[np.arange(rounds), [stream.arm_ids.index(a) for a in picks]]
    want = realized[~np.array(held)].mean() - realized[np.array(held)].mean()
    assert math.isclose(c.report_lift, want, rel_tol=1e-9, abs_tol=1e-12)
