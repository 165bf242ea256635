"""`QoeModel` (the `qoe_model` policy) against the plain numpy reference in numpy_reference_qoe.py.

Scores must agree within ``|a − b| <= 1e-9 · max(1, |b|)`` and choices must be identical (up to genuine
numeric near-ties, checked to really be ties) over hypothesis-generated sequences of arms, measurements,
failures, scalar rewards and preferences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy_reference_qoe import ReferenceQoeModel

from edgesel_server.core import QoeModel, SnapshotError, UnknownArmError

RTOL = 1e-9

SIM_SPEC = {
    "weights": {"user_rating": 0.0, "latency_ms": 1.0, "energy_mj": 1.0, "accuracy": 1.0},
    "latency_budget_ms": 100.0,
    "latency_shape": "logistic",
    "latency_steepness": 2.0,
    "energy_budget_mj": 300.0,
    "energy_shape": "logistic",
    "latency_limit_ms": 2000.0,
    "accuracy_floor": 0.55,
    "accuracy_ceiling": 0.88,
}


def assert_close(actual, expected, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    err = np.abs(actual - expected)
    tol = RTOL * np.maximum(1.0, np.abs(expected))
    assert (err <= tol).all(), f"{what}: core={actual} reference={expected} (max diff {err.max():.3e})"


class Mirror:
    def __init__(self, d, p, spec=None, **kw):
        self.core = QoeModel(d, p, spec, **kw)
        self.ref = ReferenceQoeModel(d, p, spec, **kw)
        self.near_ties = 0

    def add_arm(self, arm_id, m, accuracy=None):
        self.core.add_arm(arm_id, np.asarray(m, dtype=np.float64), accuracy=accuracy)
        self.ref.add_arm(arm_id, m, accuracy)

    def update(self, arm_id, x, reward, **kw):
        self.core.update(arm_id, x, reward, **kw)
        self.ref.update(arm_id, x, reward, **kw)

    def check(self, x, arms=None, **prefs):
        ids, exp, bonus, opt = self.core.score(x, arms, **prefs)
        rids, rexp, rbonus, ropt, _ = self.ref.score(x, arms, **prefs)
        assert list(ids) == rids
        assert_close(exp, rexp, "expected")
        assert_close(bonus, rbonus, "bonus")
        assert_close(opt, ropt, "optimistic")
        chosen, _, _, _, fallback = self.core.select(x, arms, **prefs)
        check_choose(self.core, x, arms, prefs)
        rchosen, rfallback = self.ref.select(x, arms, **prefs)
        if chosen != rchosen:
            # Only acceptable when the two are a genuine numeric tie.
            j, k = ids.index(chosen), ids.index(rchosen)
            assert abs(ropt[j] - ropt[k]) <= RTOL * max(1.0, abs(ropt[k])), (chosen, rchosen)
            self.near_ties += 1
        else:
            assert fallback == rfallback


def check_choose(core: QoeModel, x, arms, prefs) -> None:
    """`choose` (the server's one call) is `select`'s choice with exploratory and, when asked, exactly
    `score`'s tuple; without conservative mode also what the server computed from `score` with numpy before
    (highest optimistic QoE, ties to the smallest id)."""
    ids, exp, bonus, opt = core.score(x, arms, **prefs)
    chosen = core.select(x, arms, **prefs)[0]
    if core.conservative_state() is None:
        i = int(opt.argmax())
        if np.count_nonzero(opt == opt[i]) > 1:
            i = int(min(np.flatnonzero(opt == opt[i]), key=lambda j: ids[j]))
        assert ids[i] == chosen
    j = ids.index(chosen)
    want = (chosen, float(exp[j]), float(bonus[j]), float(opt[j]), bool(exp[j] < exp.max()))
    for with_scores in (False, True):
        got = core.choose(x, arms, with_scores=with_scores, **prefs)
        assert got[:5] == want and all(type(a) is type(b) for a, b in zip(got[:5], want, strict=True))
        if not with_scores:
            assert got[5] is None
            continue
        assert got[5][0] == ids
        for u, v in zip(got[5][1:], (exp, bonus, opt), strict=True):
            assert u.dtype == v.dtype and np.array_equal(u, v)


measurement = st.fixed_dictionaries(
    {},
    optional={
        "latency_ms": st.floats(0.0, 5000.0),
        "energy_mj": st.floats(0.0, 5000.0),
        "user_rating": st.floats(1.0, 5.0),
        "accuracy": st.floats(0.0, 1.0),
    },
)
feedback = st.one_of(
    measurement.map(lambda m: ("measured", m)),
    st.just(("failed", {})),
    st.just(("scalar", {})),
)
prefs = st.fixed_dictionaries(
    {},
    optional={
        "latency_budget_ms": st.floats(1.0, 1000.0),
        "energy_budget_mj": st.floats(1.0, 5000.0),
        "weights": st.fixed_dictionaries(
            {},
            optional={n: st.floats(0.0, 3.0) for n in ("user_rating", "latency_ms", "energy_mj", "accuracy")},
        ),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 4),
    p=st.integers(0, 3),
    n_arms=st.integers(1, 5),
    alpha=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    sim_spec=st.booleans(),
    steps=st.lists(
        st.tuples(st.integers(0, 4), feedback, prefs, st.floats(0.0, 1.0)), min_size=1, max_size=25
    ),
    seed=st.integers(0, 2**32 - 1),
    half_life=st.sampled_from([0, 0, 1, 3, 17]),
)
def test_matches_reference(d, p, n_arms, alpha, sim_spec, steps, seed, half_life):
    rng = np.random.default_rng(seed)
    spec = SIM_SPEC if sim_spec else None
    mirror = Mirror(d, p, spec, alpha=alpha, half_life=half_life)
    for a in range(n_arms):
        acc = None if a % 2 else float(rng.uniform(0.5, 0.9))
        mirror.add_arm(f"arm{a}", rng.uniform(0.0, 1.0, p), acc)
    for arm, (kind, meas), pref, reward in steps:
        x = rng.uniform(0.0, 1.0, d)
        mirror.check(x, **pref)
        arm_id = f"arm{arm % n_arms}"
        if kind == "failed":
            mirror.update(arm_id, x, 0.0, failed=True, **pref)
        elif kind == "measured" and meas:
            mirror.update(arm_id, x, reward, **meas, **pref)
        else:
            mirror.update(arm_id, x, reward, **pref)
        mirror.check(x, [f"arm{(arm + 1) % n_arms}", arm_id], **pref)
    assert mirror.near_ties <= 2
    blob = mirror.core.to_bytes()
    restored = QoeModel.from_bytes(blob)
    assert restored.half_life == half_life and restored.to_bytes() == blob
    x = rng.uniform(0.0, 1.0, d)
    a, b = mirror.core.score(x), restored.score(x)
    for u, v in zip(a[1:], b[1:], strict=True):
        assert np.array_equal(u, v)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.floats(1.0, 400.0), st.floats(0.0, 1.0)), min_size=5, max_size=40
    ),
    max_loss=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_conservative_matches_reference(steps, max_loss, seed):
    rng = np.random.default_rng(seed)
    mirror = Mirror(2, 1, SIM_SPEC, baseline_model="arm0", max_loss=max_loss)
    for a in range(4):
        mirror.add_arm(f"arm{a}", rng.uniform(0, 1, 1), 0.6 + 0.05 * a)
    for _, latency, reward in steps:
        x = rng.uniform(0.0, 1.0, 2)
        mirror.check(x, energy_budget_mj=math.inf)
        chosen = mirror.core.select(x, energy_budget_mj=math.inf)[0]
        mirror.update(chosen, x, reward, latency_ms=latency, energy_budget_mj=math.inf)
    st_core = mirror.core.conservative_state()
    assert st_core is not None
    assert math.isclose(st_core["played"], mirror.ref.played, rel_tol=RTOL, abs_tol=RTOL)
    assert math.isclose(st_core["baseline_total"], mirror.ref.baseline_total, rel_tol=RTOL, abs_tol=RTOL)


def test_preferences_change_the_choice_for_the_same_device():
    # fast_small: 20 ms, low accuracy; slow_big: 300 ms, high accuracy. A tight latency budget (or weight on
    # latency) prefers the fast one, a loose budget with weight on accuracy the accurate one.
    m = QoeModel(1, 1, {"weights": {"latency_ms": 1.0, "accuracy": 1.0}}, alpha=0.0)
    m.add_arm("fast_small", [0.0], accuracy=0.60)
    m.add_arm("slow_big", [1.0], accuracy=0.85)
    x = np.array([0.5])
    for _ in range(30):
        m.update("fast_small", x, 0.5, latency_ms=20.0)
        m.update("slow_big", x, 0.5, latency_ms=300.0)
    tight = m.select(x, latency_budget_ms=50.0)[0]
    loose = m.select(x, latency_budget_ms=5000.0)[0]
    accuracy_first = m.select(x, weights={"latency_ms": 0.1, "accuracy": 1.0}, latency_budget_ms=400.0)[0]
    assert (tight, loose, accuracy_first) == ("fast_small", "slow_big", "slow_big")


def test_failures_steer_away_and_reward_min_is_the_qoe_of_a_failed_run():
    m = QoeModel(1, 1, alpha=0.0)
    m.add_arm("crashes", [1.0], accuracy=0.9)
    m.add_arm("runs", [0.0], accuracy=0.7)
    x = np.array([1.0])
    for _ in range(20):
        m.update("crashes", x, 0.0, failed=True)
        m.update("runs", x, 0.6, latency_ms=50.0)
    ids, exp, _, _ = m.score(x)
    assert ids[int(np.argmax(exp))] == "runs"
    assert exp[ids.index("crashes")] < 0.1
    assert m.target_stats()["runs"]["n_updates"] == 40


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"energy_mj": math.inf}, "energy_mj"),
        ({"failed": True, "latency_ms": 10.0}, "latency_ms"),
        ({"user_rating": 9.0}, "user_rating"),
        ({"accuracy": 1.5}, "accuracy"),
        ({"weights": {"bogus": 1.0}}, "bogus"),
        ({"latency_budget_ms": -3.0}, "latency_budget_ms"),
    ],
)
def test_bad_observation_is_rejected_and_changes_nothing(kwargs, field):
    m = QoeModel(2, 1)
    m.add_arm("a", [0.5])
    m.update("a", [0.1, 0.2], 0.5, latency_ms=30.0)
    before = m.to_bytes()
    with pytest.raises(ValueError, match=field):
        m.update("a", [0.1, 0.2], 0.5, **kwargs)
    assert m.to_bytes() == before


def test_api_errors():
    m = QoeModel(2, 1)
    with pytest.raises(ValueError, match="empty eligible"):
        m.add_arm("a", [0.5])
        m.select([0.0, 0.0], [])
    with pytest.raises(UnknownArmError):
        m.update("nope", [0.0, 0.0], 0.5)
    with pytest.raises(ValueError, match="reward"):
        m.update("a", [0.0, 0.0], 2.0)
    with pytest.raises(ValueError, match="unknown spec key"):
        QoeModel(2, 1, {"latency_budget": 3})
    with pytest.raises(ValueError, match="accuracy"):
        m.add_arm("b", [0.5], accuracy=80.0)
    with pytest.raises(SnapshotError):
        QoeModel.from_bytes(b"EDGESELB" + bytes(20))
    blob = bytearray(m.to_bytes())
    blob[len(blob) // 2] ^= 1
    with pytest.raises(SnapshotError, match="checksum"):
        QoeModel.from_bytes(bytes(blob))
    assert m.spec["latency_shape"] == "linear" and m.policy == "qoe_model"
