"""Policy-vs-holdout statistics (edgesel_server.lift) against numpy, and the lift interval's coverage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server.lift import (
    BUCKETS,
    RELATIVE_ACCURACY,
    LatencyHistogram,
    LiftTracker,
    Outcomes,
    lift,
    pooled_lift,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 1e5, allow_nan=False), min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_latency_quantiles_within_relative_accuracy_of_numpy(values, q):
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    want = float(np.quantile(np.array(values), q, method="inverted_cdf"))  # nearest rank
    got = h.quantile(q)
    assert got is not None and abs(got - want) <= RELATIVE_ACCURACY * want * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_outcomes_and_welch_interval_match_numpy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(int(rng.integers(2, 400)))
    b = rng.random(int(rng.integers(2, 400))) * 0.9
    pa, pb = Outcomes(), Outcomes()
    for v in a:
        pa.add(float(v), None, False)
    for v in b:
        pb.add(float(v), None, False)
    assert pa.mean == pytest.approx(a.mean(), rel=1e-12)
    assert pa.variance == pytest.approx(a.var(ddof=1), rel=1e-9)
    lf = lift(pa, pb)
    assert lf is not None
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    diff = a.mean() - b.mean()
    assert lf.absolute == pytest.approx(diff, rel=1e-12, abs=1e-15)
    assert lf.ci95 == pytest.approx((diff - 1.959963984540054 * se, diff + 1.959963984540054 * se), rel=1e-9)
    assert lf.relative == pytest.approx(a.mean() / b.mean() - 1, rel=1e-12)


def test_too_few_observations_give_no_interval():
    assert pooled_lift([("policy", 0.5), ("holdout", 0.4), ("holdout", 0.3)]) is None


def test_lift_interval_covers_the_true_lift():
    """Two groups of Bernoulli-ish QoE with a known true difference: the 95 % interval covers it in
    ≥ 92 % of 300 seeded repetitions (binomial(300, 0.95) is below 92 % with probability < 0.5 %)."""
    covered = 0
    for seed in range(300):
        rng = np.random.default_rng(10_000 + seed)
        pol = rng.beta(6, 3, size=400)  # mean 2/3
        hold = rng.beta(5, 4, size=60)  # mean 5/9
        lf = pooled_lift([("policy", float(v)) for v in pol] + [("holdout", float(v)) for v in hold])
        assert lf is not None
        covered += lf.ci95[0] <= 2 / 3 - 5 / 9 <= lf.ci95[1]
    assert covered >= 0.92 * 300, covered


def test_failures_and_latency_per_class_and_sliding_window():
    t = LiftTracker(window_s=100.0, slots=10)
    t.add("policy", "phone", qoe=0.8, latency_ms=20.0, failed=False, at=5.0)
    t.add("policy", "phone", qoe=0.0, latency_ms=None, failed=True, at=6.0)
    t.add("holdout", "phone", qoe=0.5, latency_ms=40.0, failed=False, at=7.0)
    t.add("holdout", "phone", qoe=0.7, latency_ms=30.0, failed=False, at=150.0)
    t.add("policy", "iot", qoe=0.9, latency_ms=10.0, failed=False, at=151.0)
    r = t.report(now=155.0)
    start = r["since_start"]["classes"]["phone"]
    assert start["policy"]["n"] == 2 and start["policy"]["failure_rate"] == 0.5
    assert start["policy"]["p50_latency_ms"] == pytest.approx(20.0, rel=RELATIVE_ACCURACY)
    assert start["holdout"]["p95_latency_ms"] == pytest.approx(40.0, rel=RELATIVE_ACCURACY)
    assert start["lift"]["absolute"] == pytest.approx(0.4 - 0.6)
    # the window [60, 160) no longer holds the observations made at t = 5..7
    win = r["window"]["classes"]
    assert win["phone"]["policy"]["n"] == 0 and win["phone"]["holdout"]["n"] == 1
    assert win["iot"]["policy"]["mean_qoe"] == 0.9 and win["iot"]["lift"] is None
    assert r["since_start"]["all"]["policy"]["n"] == 3
    # old slots are dropped from memory, not only from the report
    assert min(t.recent) > 150 // 10 - 10


def test_state_round_trips_exactly_through_json():
    rng = np.random.default_rng(3)
    t = LiftTracker(window_s=60.0, slots=6)
    for i in range(500):
        t.add(
            "policy" if rng.random() < 0.9 else "holdout",
            str(rng.choice(["phone", "sbc", "car"])),
            qoe=float(rng.random()),
            latency_ms=float(rng.lognormal(3, 1)),
            failed=bool(rng.random() < 0.05),
            at=i * 0.5,
        )
    back = LiftTracker.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back.report(250.0) == t.report(250.0)
    assert back.to_dict() == t.to_dict()


def test_bad_arguments():
    with pytest.raises(ValueError, match="group"):
        LiftTracker().add("treatment", "x", qoe=1.0, latency_ms=None, failed=False, at=0.0)
    with pytest.raises(ValueError, match="window_s"):
        LiftTracker(window_s=0)


def _clustered_fleet(rng: np.random.Generator, lift_true: float) -> list[tuple[str, int, float]]:
    """(group, device, qoe): 600 devices, a quarter held out, 1 + Poisson(4) requests each; a device's QoE is
    its own level (its user, its hardware: sd 0.2) plus request noise (sd 0.05); policy devices gain
    `lift_true` on average. So requests of one device are strongly correlated."""
    out = []
    for device in range(600):
        group = "holdout" if device % 4 == 0 else "policy"
        level = rng.normal(0.5, 0.2) + (lift_true if group == "policy" else 0.0)
        for _ in range(1 + int(rng.poisson(4))):
            out.append((group, device, float(level + rng.normal(0.0, 0.05))))
    return out


def test_the_interval_clustered_by_device_covers_the_fleet_lift_and_welch_does_not():
    """The holdout is drawn by device and a device's requests are correlated, so the fleet-level lift's
    uncertainty is the devices', not the requests': the report's interval, from per-bucket sums (devices
    hashed into BUCKETS groups), covers it in ≥ 92 % of 300 seeded fleets; Welch's over requests in < 80 %."""
    bucketed = welch = 0
    for seed in range(300):
        rng = np.random.default_rng(20_000 + seed)
        t = LiftTracker()
        plain = {"policy": Outcomes(), "holdout": Outcomes()}
        for group, device, q in _clustered_fleet(rng, 0.03):
            t.add(group, "all", qoe=q, latency_ms=None, failed=False, at=0.0, bucket=device % BUCKETS)
            plain[group].add(q, None, False)
        ci = t.report(0.0)["since_start"]["all"]["lift"]["ci95"]
        bucketed += ci[0] <= 0.03 <= ci[1]
        lf = lift(plain["policy"], plain["holdout"])
        assert lf is not None
        welch += lf.ci95[0] <= 0.03 <= lf.ci95[1]
    assert bucketed >= 0.92 * 300, bucketed
    assert welch < 0.80 * 300, welch


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_bucketed_interval_equals_a_numpy_cluster_robust_reference(seed, per_bucket):
    rng = np.random.default_rng(seed)
    n_p, n_h = int(rng.integers(2, 200)), int(rng.integers(2, 60))
    y = {"policy": rng.random(n_p), "holdout": rng.random(n_h) * 0.8}
    b = {g: rng.integers(0, max(2, len(v) // per_bucket), len(v)) % BUCKETS for g, v in y.items()}
    cells = {g: Outcomes() for g in y}
    for g in y:
        for v, k in zip(y[g], b[g], strict=True):
            cells[g].add(float(v), None, False, bucket=int(k))
    var = {}
    for g in y:
        ks = np.unique(b[g])
        resid = np.array([(y[g][b[g] == k] - y[g].mean()).sum() for k in ks])
        # one bucket: no cluster variance, Welch's s²/n for that group
        k = len(ks)
        var[g] = k / (k - 1) * (resid**2).sum() / len(y[g]) ** 2 if k > 1 else y[g].var(ddof=1) / len(y[g])
    lf = lift(cells["policy"], cells["holdout"])
    assert lf is not None
    diff = y["policy"].mean() - y["holdout"].mean()
    se = math.sqrt(var["policy"] + var["holdout"])
    assert lf.ci95 == pytest.approx((diff - 1.959963984540054 * se, diff + 1.959963984540054 * se), rel=1e-9)
    # one observation per bucket: exactly Welch's interval
    single = {g: Outcomes() for g in y}
    for g in y:
        for k, v in enumerate(y[g][: BUCKETS // 2]):
            single[g].add(float(v), None, False, bucket=k)
    a, w = (
        lift(single["policy"], single["holdout"]),
        pooled_lift([(g, float(v)) for g in y for v in y[g][: BUCKETS // 2]]),
    )
    assert a is not None and w is not None and a.ci95 == pytest.approx(w.ci95, rel=1e-9)
