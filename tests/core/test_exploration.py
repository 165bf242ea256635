"""The exploration owns the decision: forced sampling, propensities, the generator in the snapshot, and the
typed results and policy table the core exports (docs/core.md, "Exploration" and "Selection")."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from numpy_reference import SplitMix64, best_index

from edgesel_server import core
from edgesel_server.core import Bandit, CoreError, Selection, SnapshotError, UnknownArmError

D, P, K = 3, 2, 5
ROOT = Path(__file__).resolve().parents[2]


def make(policy: str, eps: float, seed: int = 7) -> Bandit:
    rng = np.random.default_rng(seed)
    b = Bandit(policy, D, P, alpha=0.9, seed=seed, forced_sampling=eps)
    for i in range(K):
        b.add_arm(f"arm{i}", rng.normal(size=P))
    return b


def run(b: Bandit, rng: np.random.Generator, n: int) -> list[tuple]:
    """n closed-loop decisions (the reward depends on the pick, as in production)."""
    out = []
    for _ in range(n):
        x = rng.normal(size=D)
        s = b.select(x, None if rng.uniform() < 0.7 else ["arm3", "arm1", "arm4"])
        out.append((s.id, s.mean, s.bonus, s.total, s.propensity, s.exploratory))
        b.update(s.id, x, float(x.sum()) * (1 + int(s.id[-1])) * 0.1 + float(rng.normal()))
    return out


def same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal decisions, NaN propensities (Thompson) included."""
    return all(
        u[:4] == v[:4] and u[5] == v[5] and (u[4] == v[4] or (math.isnan(u[4]) and math.isnan(v[4])))
        for u, v in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(
    ("policy", "eps"), [("disjoint_linucb", 0.2), ("hybrid_linucb", 0.2), ("lin_ts", 0.2), ("lin_ts", 0.0)]
)
def test_restored_bandit_makes_the_same_next_1000_decisions(policy: str, eps: float) -> None:
    a = make(policy, eps)
    run(a, np.random.default_rng(1), 40)
    b = Bandit.from_bytes(a.to_bytes())
    assert b.forced_sampling == eps
    got_a = run(a, np.random.default_rng(2), 1000)
    got_b = run(b, np.random.default_rng(2), 1000)
    assert same(got_a, got_b)
    assert eps == 0 or sum(e for *_, e in got_a) > 0


def test_forced_sampling_is_a_setting_a_restore_may_change() -> None:
    a = make("hybrid_linucb", 0.5)
    run(a, np.random.default_rng(4), 30)
    b = Bandit.from_bytes(a.to_bytes(), forced_sampling=0.0)
    assert b.forced_sampling == 0.0 and a.forced_sampling == 0.5
    x = np.array([0.2, 0.1, -0.4])
    assert b.to_bytes() != a.to_bytes()  # ε is stored
    assert b.select(x).propensity == 1.0
    ids, _, _, total = b.score(x)
    assert b.select(x).id == ids[best_index(list(ids), list(total))]
    with pytest.raises(CoreError, match="forced_sampling"):
        Bandit.from_bytes(a.to_bytes(), forced_sampling=2.0)


def test_forced_draws_follow_the_documented_stream() -> None:
    """Per select with ε > 0: two draws first; u1·2⁻⁵³ < ε forces, and then ⌊u2·n / 2⁶⁴⌋ is the pick."""
    eps, seed = 0.4, 12345
    b = make("hybrid_linucb", eps, seed=seed)
    ref = SplitMix64(seed)
    rng = np.random.default_rng(3)
    forced = 0
    for _ in range(400):
        x = rng.normal(size=D)
        ids, mean, _, total = b.score(x)
        greedy = ids[best_index(list(ids), list(total))]
        u1, u2 = ref.next_u64(), ref.next_u64()
        expect = ids[(u2 * K) >> 64] if (u1 >> 11) * 2.0**-53 < eps else greedy
        s = b.select(x)
        assert s.id == expect
        p = (1 - eps) * (s.id == greedy) + eps / K
        assert s.propensity == pytest.approx(p, rel=1e-15)
        assert s.exploratory == (mean[list(ids).index(s.id)] < mean.max())
        forced += s.id != greedy
        b.update(s.id, x, float(rng.normal()))
    assert forced > 50


def test_propensities_of_each_exploration() -> None:
    x = np.array([0.3, -0.2, 0.5])
    assert make("hybrid_linucb", 0.0).select(x).propensity == 1.0  # deterministic
    assert make("disjoint_linucb", 1.0).select(x).propensity == 1 / K  # uniform
    assert math.isnan(make("lin_ts", 0.0).select(x).propensity)  # no closed form
    assert math.isnan(make("lin_ts", 0.3).select(x).propensity)
    assert make("lin_ts", 1.0).select(x).propensity == 1 / K
    s = make("disjoint_linucb", 1.0).select(x, ["arm1", "arm1", "arm2", "arm0"])  # repeated id
    assert s.propensity == (0.5 if s.id == "arm1" else 0.25)


def test_with_scores_uses_the_decisions_own_draws() -> None:
    b = make("lin_ts", 0.0)
    x = np.array([0.1, 0.2, 0.3])
    s = b.select(x, ["arm4", "arm0", "arm2"], with_scores=True)
    assert s.scores is not None
    ids, mean, bonus, total = s.scores
    assert ids == ["arm4", "arm0", "arm2"]
    i = best_index(ids, list(total))
    assert (s.id, s.mean, s.bonus, s.total) == (ids[i], mean[i], bonus[i], total[i])
    assert b.select(x).scores is None


def test_selection_is_a_frozen_typed_result() -> None:
    s = make("hybrid_linucb", 0.0).select(np.zeros(D))
    assert isinstance(s, Selection)
    assert isinstance(s.id, str) and isinstance(s.exploratory, bool) and isinstance(s.propensity, float)
    with pytest.raises(AttributeError):
        s.id = "other"  # type: ignore[misc]
    assert repr(s).startswith("Selection(id=")


def test_forced_sampling_is_validated() -> None:
    for bad in (-0.1, 1.01, math.nan, math.inf):
        with pytest.raises(CoreError, match="forced_sampling"):
            Bandit("hybrid_linucb", D, P, forced_sampling=bad)


def test_policy_table_version_and_errors_come_from_the_core() -> None:
    assert core.BANDIT_POLICIES == ("disjoint_linucb", "hybrid_linucb", "lin_ts")
    assert core.POLICIES == ("qoe_model", *core.BANDIT_POLICIES)  # QoeModel, then Bandit's table
    assert [core.uses_model_features(p) for p in core.BANDIT_POLICIES] == [False, True, True]
    assert [Bandit(p, D, P).uses_model_features for p in core.BANDIT_POLICIES] == [False, True, True]
    with pytest.raises(CoreError, match="unknown policy"):
        core.uses_model_features("nope")
    cargo = re.search(r'^version = "(.+)"$', (ROOT / "core-rs" / "Cargo.toml").read_text(), re.M)
    assert cargo is not None and core.__version__ == cargo.group(1)
    assert issubclass(CoreError, ValueError)
    assert issubclass(UnknownArmError, CoreError) and issubclass(SnapshotError, CoreError)
    with pytest.raises(UnknownArmError):
        make("hybrid_linucb", 0.0).update("ghost", np.zeros(D), 1.0)
    with pytest.raises(CoreError, match="alpha"):
        Bandit("hybrid_linucb", D, P, alpha=-1.0)
