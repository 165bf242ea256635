"""A plain numpy implementation of the bandit core in docs/core.md, used as the reference in tests.

Written to be obviously correct, not fast: every statistic is kept in its textbook form (the hybrid
per-arm cross term ``B_a = Σ x zᵀ`` is stored as a full ``d×k`` matrix, the joint features are built
with ``np.kron``), nothing is cached, and every score solves / inverts the exact ``A`` matrices from
scratch. No Sherman-Morrison updates, no refactoring, no closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # the reference itself never touches the core
    from edgesel_server.core import Selection

POLICIES = ("disjoint_linucb", "hybrid_linucb", "lin_ts")

MASK64 = (1 << 64) - 1


class SplitMix64:
    """SplitMix64 on Python ints masked to 64 bits, with the uniform / Box-Muller normal of the spec."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """In (0, 1): ``((u64 >> 11) + 0.5) · 2⁻⁵³``."""
        return ((self.next_u64() >> 11) + 0.5) * 2.0**-53

    def normal(self) -> float:
        """Box-Muller, cosine branch only: ``sqrt(−2 ln u1)·cos(2π u2)``, u1 drawn first."""
        u1 = self.uniform()
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def joint_features(x: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    """``z = [1, x] ⊗ [1, m]`` flattened row-major: ``z[i*(p+1) + j] = x'[i] * m'[j]``."""
    x1 = np.concatenate(([1.0], np.asarray(x, dtype=np.float64)))
    m1 = np.concatenate(([1.0], np.asarray(m, dtype=np.float64)))
    return np.kron(x1, m1)


@dataclass
class ArmState:
    model_features: NDArray[np.float64]  # (p,)
    a: NDArray[np.float64]  # (d, d)   λI + Σ x xᵀ
    b: NDArray[np.float64]  # (d,)     Σ r x
    s: NDArray[np.float64]  # (d,)     Σ x            (kept for completeness; the reference uses B)
    cross: NDArray[np.float64]  # (d, k)   B_a = Σ x zᵀ   (k = 0 for disjoint statistics)
    n_updates: int = 0


@dataclass
class Score:
    ids: list[str]
    mean: NDArray[np.float64]
    bonus: NDArray[np.float64]
    total: NDArray[np.float64]
    var: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def best_index(ids: Sequence[str], total: NDArray[np.float64]) -> int:
    """Index of the highest total; equal totals go to the lexicographically smallest id."""
    top = max(total)
    candidates = [i for i in range(len(ids)) if total[i] == top]
    return min(candidates, key=lambda i: ids[i])


class ReferenceBandit:
    def __init__(
        self,
        policy: str,
        device_dim: int,
        model_dim: int = 0,
        *,
        alpha: float = 1.0,
        lam: float = 1.0,
        seed: int = 0,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        if device_dim < 1 or model_dim < 0:
            raise ValueError("bad dimensions")
        if not (alpha >= 0.0) or not math.isfinite(alpha):
            raise ValueError("alpha must be >= 0")
        if not (lam > 0.0) or not math.isfinite(lam):
            raise ValueError("lam must be > 0")
        self.policy = policy
        self.device_dim = d = device_dim
        self.model_dim = p = model_dim
        self.alpha = float(alpha)
        self.lam = float(lam)
        self.thompson = policy == "lin_ts"
        self.hybrid = policy == "hybrid_linucb" or (policy == "lin_ts" and model_dim > 0)
        self.joint_dim = k = (d + 1) * (p + 1) if self.hybrid else 0
        self.rng = SplitMix64(seed)
        self.n_updates = 0
        self.arms: dict[str, ArmState] = {}  # insertion ordered
        # shared statistics over z (hybrid only; k = 0 otherwise)
        self.a0 = self.lam * np.eye(k)
        self.b0 = np.zeros(k)
        self.n_shared = 0

    # ---- arms -------------------------------------------------------------------------------
    def add_arm(self, arm_id: str, model_features: Sequence[float] | NDArray | None = None) -> None:
        if arm_id in self.arms:
            raise ValueError(f"duplicate arm id {arm_id!r}")
        d, p, k = self.device_dim, self.model_dim, self.joint_dim
        m = np.zeros(0) if model_features is None else np.asarray(model_features, dtype=np.float64)
        if m.shape != (p,):
            raise ValueError(f"model features must have length {p}")
        self.arms[arm_id] = ArmState(
            model_features=m.copy(),
            a=self.lam * np.eye(d),
            b=np.zeros(d),
            s=np.zeros(d),
            cross=np.zeros((d, k)),
        )

    def remove_arm(self, arm_id: str) -> None:
        del self.arms[arm_id]

    def arm_ids(self) -> list[str]:
        return list(self.arms)

    # ---- model ------------------------------------------------------------------------------
    def z(self, x: NDArray[np.float64], arm_id: str) -> NDArray[np.float64]:
        return joint_features(x, self.arms[arm_id].model_features)

    def beta(self) -> NDArray[np.float64]:
        return np.linalg.solve(self.a0, self.b0)

    def theta(self, arm_id: str) -> NDArray[np.float64]:
        arm = self.arms[arm_id]
        if self.hybrid:
            return np.linalg.solve(arm.a, arm.b - arm.cross @ self.beta())
        return np.linalg.solve(arm.a, arm.b)

    def mean_var(self, x: NDArray[np.float64], arm_id: str) -> tuple[float, float]:
        arm = self.arms[arm_id]
        a_inv = np.linalg.inv(arm.a)
        mean = float(x @ self.theta(arm_id))
        var = float(x @ a_inv @ x)
        if self.hybrid:
            z = self.z(x, arm_id)
            mean += float(z @ self.beta())
            var += float(z @ np.linalg.inv(self.a0) @ z)
        return mean, var

    def score(self, x: NDArray[np.float64], arms: Sequence[str] | None = None) -> Score:
        x = np.asarray(x, dtype=np.float64)
        ids = list(self.arms) if arms is None else list(arms)
        if not ids:
            raise ValueError("empty eligible list")
        means, bonuses, variances = [], [], []
        for arm_id in ids:  # in the order the arms are scored (matters for Thompson draws)
            mean, var = self.mean_var(x, arm_id)
            bonus = self.alpha * math.sqrt(var)
            if self.thompson:
                bonus *= self.rng.normal()
            means.append(mean)
            bonuses.append(bonus)
            variances.append(var)
        mean_a, bonus_a = np.array(means), np.array(bonuses)
        return Score(ids, mean_a, bonus_a, mean_a + bonus_a, np.array(variances))

    def select(self, x: NDArray[np.float64], arms: Sequence[str] | None = None) -> tuple[str, Score]:
        sc = self.score(x, arms)
        return sc.ids[best_index(sc.ids, sc.total)], sc

    # ---- feedback ---------------------------------------------------------------------------
    def update(self, arm_id: str, x: NDArray[np.float64], reward: float) -> None:
        x = np.asarray(x, dtype=np.float64)
        arm = self.arms[arm_id]
        arm.a += np.outer(x, x)
        arm.b += reward * x
        arm.s += x
        arm.n_updates += 1
        if self.hybrid:
            z = self.z(x, arm_id)
            arm.cross += np.outer(x, z)
            self.a0 += np.outer(z, z)
            self.b0 += reward * z
            self.n_shared += 1
        self.n_updates += 1

    def update_batch(self, arm_ids: Sequence[str], xs: NDArray[np.float64], rewards: Sequence[float]) -> None:
        for arm_id, x, r in zip(arm_ids, xs, rewards, strict=True):
            self.update(arm_id, x, float(r))

    # ---- introspection ----------------------------------------------------------------------
    def arm_stats(self, arm_id: str) -> dict:
        arm = self.arms[arm_id]
        return {
            "n_updates": arm.n_updates,
            "theta": self.theta(arm_id),
            "model_features": arm.model_features.copy(),
            "a": arm.a.copy(),
            "a_inv": np.linalg.inv(arm.a),
            "b": arm.b.copy(),
        }

    def shared_stats(self) -> dict:
        if not self.hybrid:
            raise ValueError("no shared statistics")
        return {
            "n_updates": self.n_shared,
            "beta": self.beta(),
            "a": self.a0.copy(),
            "a_inv": np.linalg.inv(self.a0),
            "b": self.b0.copy(),
        }


def fields(sel: Selection) -> tuple[str, float, float, float]:
    """``(id, mean, bonus, total)`` of a core ``Selection`` (what the reference's ``select`` pins down)."""
    return sel.id, sel.mean, sel.bonus, sel.total
