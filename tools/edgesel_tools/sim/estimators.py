"""Off-policy estimators over a decision log: IPS, SNIPS, the direct method (DM) and doubly robust (DR).

Notation (as in Open Bandit Pipeline's `ope/estimators.py` and Dudík et al. 2011): for logged event i with
context x_i, logged arm a_i, logging propensity p_i and reward r_i, the target policy's probabilities over the
eligible arms are π_i(·) and the reward model's predictions q̂_i(·); the importance weight is
w_i = π_i(a_i) / p_i. Per-event terms:

    ips_i = w_i r_i
    dm_i  = Σ_a π_i(a) q̂_i(a)
    dr_i  = dm_i + w_i (r_i − q̂_i(a_i))

IPS, DM and DR are the means of their terms over the n events; SNIPS is Σ ips_i / Σ w_i. Confidence
intervals are percentile bootstraps over events (OBP's `estimate_confidence_interval_by_bootstrap`): resample
the n events with replacement B times, recompute the estimate, and take the 2.5 % and 97.5 % quantiles (for
SNIPS the numerator and the weights are resampled together, so the ratio's variance is included).

The reward model is a ridge regression per arm over [1, x] fit to the centred rewards of the whole log (each
arm's prediction shrinks towards the log's mean reward where it has few events), the "direct method" of Dudík
et al. without cross-fitting (OBP's `RegressionModel` with `n_folds=1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class EventTerms:
    """Per-event terms of every estimator, one entry per logged event that has a reward."""

    weight: NDArray  # w_i = π_i(a_i) / p_i
    ips: NDArray
    dm: NDArray
    dr: NDArray

    def estimates(self) -> dict[str, float | None]:
        n = len(self.weight)
        if n == 0:
            return {name: None for name in ESTIMATORS}
        wsum = float(self.weight.sum())
        return {
            "ips": float(self.ips.mean()),
            "snips": float(self.ips.sum() / wsum) if wsum > 0 else None,
            "dm": float(self.dm.mean()),
            "dr": float(self.dr.mean()),
        }

    def bootstrap(
        self, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
    ) -> dict[str, Interval]:
        """Percentile bootstrap intervals of every estimator (seeded, so a report is reproducible)."""
        n = len(self.weight)
        if n == 0:
            return {}
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_resamples, n))
        tail = (1.0 - level) / 2.0 * 100.0
        out: dict[str, Interval] = {}
        for name, terms in (("ips", self.ips), ("dm", self.dm), ("dr", self.dr)):
            means = terms[idx].mean(axis=1)
            lo, hi = np.percentile(means, [tail, 100.0 - tail])
            out[name] = Interval(float(lo), float(hi))
        wsums = self.weight[idx].sum(axis=1)
        ok = wsums > 0
        if ok.any():
            ratios = self.ips[idx].sum(axis=1)[ok] / wsums[ok]
            lo, hi = np.percentile(ratios, [tail, 100.0 - tail])
            out["snips"] = Interval(float(lo), float(hi))
        return out


class RidgeRewardModel:
    """q̂(x, a): per-arm ridge regression over [1, x] on rewards centred by the log's mean (see module doc)."""

    def __init__(self, lam: float = 1.0) -> None:
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        self.lam = lam
        self.offset = 0.0
        self.theta: dict[str, NDArray] = {}

    def fit(
        self, contexts: Sequence[NDArray], arms: Sequence[str], rewards: Sequence[float]
    ) -> RidgeRewardModel:
        if not len(contexts) == len(arms) == len(rewards):
            raise ValueError("contexts, arms and rewards must have one entry per event")
        if not rewards:
            return self
        r = np.asarray(rewards, dtype=np.float64)
        self.offset = float(r.mean())
        by_arm: dict[str, list[int]] = {}
        for i, a in enumerate(arms):
            by_arm.setdefault(a, []).append(i)
        for a, rows in by_arm.items():
            xs = np.stack([np.concatenate(([1.0], contexts[i])) for i in rows])
            gram = xs.T @ xs + self.lam * np.eye(xs.shape[1])
            self.theta[a] = np.linalg.solve(gram, xs.T @ (r[rows] - self.offset))
        return self

    def predict(self, x: NDArray, arms: Sequence[str]) -> NDArray:
        xb = np.concatenate(([1.0], x))
        return np.array([self.offset + (float(self.theta[a] @ xb) if a in self.theta else 0.0) for a in arms])


def event_terms(
    target_probs: Sequence[NDArray],
    predictions: Sequence[NDArray],
    logged_index: Sequence[Sequence[int]],
    propensities: Sequence[float],
    rewards: Sequence[float],
) -> EventTerms:
    """Per-event terms from, for each event: the target's probabilities over the eligible list, the reward
    model's predictions over the same list, the positions of the logged arm in that list (an arm may be
    listed twice), the logging propensity and the reward."""
    n = len(rewards)
    weight, ips, dm, dr = (np.empty(n) for _ in range(4))
    for i in range(n):
        pi, q, pos = target_probs[i], predictions[i], list(logged_index[i])
        w = float(pi[pos].sum()) / propensities[i]
        q_logged = float(q[pos[0]])
        weight[i] = w
        ips[i] = w * rewards[i]
        dm[i] = float(pi @ q)
        dr[i] = dm[i] + w * (rewards[i] - q_logged)
    return EventTerms(weight, ips, dm, dr)
