"""A plain numpy implementation of the `qoe_model` policy of docs/core.md ("The QoE model").

Each target is a textbook hybrid ridge regression (`ReferenceBandit("hybrid_linucb", alpha=1)`, which solves
the exact `A` matrices from scratch on every call); the QoE composition is written out term by term from the
spec, with no shortcuts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy_reference import ReferenceBandit, best_index

TARGETS = ("log_latency", "log_energy", "rating", "runs")
PRIOR_SD = (0.5, 0.5, 0.1, 0.5)
PRIOR_N = 2.0
MIN_COST = 1e-3
TERMS = ("user_rating", "latency_ms", "energy_mj", "accuracy")

DEFAULT_SPEC: dict = {
    "weights": {"user_rating": 1.0, "latency_ms": 1.0, "energy_mj": 0.5, "accuracy": 1.0},
    "rating_min": 1.0,
    "rating_max": 5.0,
    "latency_budget_ms": 100.0,
    "latency_shape": "linear",
    "latency_steepness": 1.0,
    "energy_budget_mj": 500.0,
    "energy_shape": "linear",
    "energy_steepness": 1.0,
    "latency_limit_ms": None,
    "accuracy_floor": 0.0,
    "accuracy_ceiling": 1.0,
    "reward_min": 0.0,
    "reward_max": 1.0,
}


def exploration_width(alpha: float, n_arms: int) -> float:
    return alpha * math.sqrt(2.0 * math.log(1.0 + n_arms)) / 8.0


def shape_score(shape: str, v: float, budget: float, steepness: float) -> float:
    if shape == "linear":
        return max(0.0, 1.0 - v / (2.0 * budget))
    return 1.0 / (1.0 + (v / budget) ** steepness)


class ReferenceQoeModel:
    def __init__(
        self,
        device_dim: int,
        model_dim: int,
        spec: Mapping | None = None,
        *,
        alpha: float = 1.0,
        lam: float = 1.0,
        baseline_model: str | None = None,
        max_loss: float = 0.05,
        half_life: int = 0,
    ) -> None:
        self.spec = dict(DEFAULT_SPEC)
        if spec:
            self.spec.update(spec)
            if "weights" in spec:
                self.spec["weights"] = {t: float(spec["weights"].get(t, 0.0)) for t in TERMS}
        self.alpha = alpha
        self.targets = [
            # forgetting per target exactly as the hybrid layout's (each target and arm on its own clock)
            ReferenceBandit("hybrid_linucb", device_dim, model_dim, alpha=1.0, lam=lam, half_life=half_life)
            for _ in TARGETS
        ]
        self.noise_n = [0, 0, 0, 0]
        self.noise_sq = [0.0, 0.0, 0.0, 0.0]
        self.accuracy: dict[str, float | None] = {}
        self.reported: dict[str, list[float]] = {}
        self.baseline = baseline_model
        self.max_loss = max_loss
        self.played = 0.0
        self.baseline_total = 0.0

    def add_arm(self, arm_id: str, m, accuracy: float | None = None) -> None:
        for t in self.targets:
            t.add_arm(arm_id, m)
        self.accuracy[arm_id] = accuracy
        self.reported[arm_id] = []

    def remove_arm(self, arm_id: str) -> None:
        for t in self.targets:
            t.remove_arm(arm_id)
        del self.accuracy[arm_id], self.reported[arm_id]

    def noise_sd(self, t: int) -> float:
        return math.sqrt((PRIOR_N * PRIOR_SD[t] ** 2 + self.noise_sq[t]) / (PRIOR_N + self.noise_n[t]))

    def prefs(self, latency_budget_ms=None, energy_budget_mj=None, weights=None) -> dict:
        w = dict(self.spec["weights"])
        w.update(weights or {})
        return {
            "lat": latency_budget_ms if latency_budget_ms is not None else self.spec["latency_budget_ms"],
            "en": energy_budget_mj if energy_budget_mj is not None else self.spec["energy_budget_mj"],
            "w": w,
        }

    def uses(self, t: int, p: dict) -> bool:
        if self.targets[t].n_updates == 0:
            return False
        if t == 0:
            return p["w"]["latency_ms"] > 0 or self.spec["latency_limit_ms"] is not None
        if t == 1:
            return p["w"]["energy_mj"] > 0
        if t == 2:
            return p["w"]["user_rating"] > 0
        return True

    def arm_accuracy(self, arm_id: str) -> float | None:
        if self.accuracy[arm_id] is not None:
            return self.accuracy[arm_id]
        rep = self.reported[arm_id]
        return sum(rep) / len(rep) if rep else None

    def predictions(self, x, arm_id: str, p: dict) -> dict[int, tuple[float, float]]:
        """Per used target: (mean, noise sd · sqrt(var))."""
        pred = {}
        for t in range(4):
            if self.uses(t, p):
                mean, var = self.targets[t].mean_var(np.asarray(x, dtype=np.float64), arm_id)
                pred[t] = (mean, self.noise_sd(t) * math.sqrt(max(var, 0.0)))
        return pred

    def measured_scores(
        self, arm_id: str, p: dict, pred: dict, z: float
    ) -> tuple[dict[str, float], float | None]:
        s = self.spec
        scores: dict[str, float] = {}
        latency = None
        if 0 in pred:
            latency = s["latency_budget_ms"] * math.exp(pred[0][0] - z * pred[0][1])
            scores["latency_ms"] = shape_score(s["latency_shape"], latency, p["lat"], s["latency_steepness"])
        if 1 in pred:
            energy = s["energy_budget_mj"] * math.exp(pred[1][0] - z * pred[1][1])
            scores["energy_mj"] = shape_score(s["energy_shape"], energy, p["en"], s["energy_steepness"])
        acc = self.arm_accuracy(arm_id)
        if acc is not None:
            scores["accuracy"] = self.accuracy_score(acc)
        return scores, latency

    def accuracy_score(self, acc: float) -> float:
        lo, hi = self.spec["accuracy_floor"], self.spec["accuracy_ceiling"]
        return min(1.0, max(0.0, (acc - lo) / (hi - lo)))

    @staticmethod
    def measured_value(scores: dict[str, float], p: dict) -> float:
        """Weighted mean of the measured terms (everything but the rating), 1/2 with none."""
        num = sum(p["w"][n] * v for n, v in scores.items() if p["w"][n] > 0 and n != "user_rating")
        den = sum(p["w"][n] for n in scores if p["w"][n] > 0 and n != "user_rating")
        return num / den if den > 0 else 0.5

    def qoe(self, x, arm_id: str, p: dict, z: float) -> float:
        s = self.spec
        pred = self.predictions(x, arm_id, p)
        scores, latency = self.measured_scores(arm_id, p, pred, z)
        if 2 in pred:
            base = self.measured_value(scores, p)
            scores["user_rating"] = min(1.0, max(0.0, base + pred[2][0] + z * pred[2][1]))
        num = sum(p["w"][n] * v for n, v in scores.items() if p["w"][n] > 0)
        den = sum(p["w"][n] for n in scores if p["w"][n] > 0)
        v = num / den if den > 0 else 0.5
        if latency is not None and s["latency_limit_ms"] is not None:
            v /= 1.0 + (latency / s["latency_limit_ms"]) ** 4
        q = s["reward_min"] + (s["reward_max"] - s["reward_min"]) * min(1.0, max(0.0, v))
        runs = min(1.0, max(0.0, 1.0 + pred[3][0] + z * pred[3][1])) if 3 in pred else 1.0
        return runs * q + (1.0 - runs) * s["reward_min"]

    def rating_reference(self, x, arm_id: str, p: dict, latency_ms, energy_mj, accuracy) -> float:
        s = self.spec
        if latency_ms is None and energy_mj is None and accuracy is None:
            scores, _ = self.measured_scores(arm_id, p, self.predictions(x, arm_id, p), 0.0)
            return self.measured_value(scores, p)
        scores = {}
        if latency_ms is not None:
            scores["latency_ms"] = shape_score(
                s["latency_shape"], latency_ms, p["lat"], s["latency_steepness"]
            )
        if energy_mj is not None:
            scores["energy_mj"] = shape_score(s["energy_shape"], energy_mj, p["en"], s["energy_steepness"])
        acc = accuracy if accuracy is not None else self.arm_accuracy(arm_id)
        if acc is not None:
            scores["accuracy"] = self.accuracy_score(acc)
        return self.measured_value(scores, p)

    def score(self, x, arms: Sequence[str] | None = None, **prefs):
        p = self.prefs(**prefs)
        ids = list(self.accuracy) if arms is None else list(arms)
        w = exploration_width(self.alpha, len(self.accuracy))
        exp = np.array([self.qoe(x, a, p, 0.0) for a in ids])
        opt = np.array([self.qoe(x, a, p, w) for a in ids])
        pes = np.array([self.qoe(x, a, p, -w) for a in ids])
        return ids, exp, opt - exp, opt, pes

    def select(self, x, arms: Sequence[str] | None = None, **prefs) -> tuple[str, bool]:
        ids, exp, _, opt, pes = self.score(x, arms, **prefs)
        best = best_index(ids, opt)
        if self.baseline is not None and self.baseline in ids:
            b = ids.index(self.baseline)
            budget = self.played + pes[best] - (1.0 - self.max_loss) * (self.baseline_total + opt[b])
            if b != best and budget < 0.0:
                return ids[b], True
        return ids[best], False

    def update(
        self,
        arm_id: str,
        x,
        reward: float,
        *,
        latency_ms=None,
        energy_mj=None,
        user_rating=None,
        accuracy=None,
        failed=False,
        **prefs,
    ) -> None:
        s = self.spec
        x = np.asarray(x, dtype=np.float64)
        ys: list[tuple[int, float]] = []
        if failed:
            ys.append((3, -1.0))
            reward = s["reward_min"]
        else:
            if latency_ms is not None:
                ys.append((0, math.log(max(latency_ms, MIN_COST) / s["latency_budget_ms"])))
            if energy_mj is not None:
                ys.append((1, math.log(max(energy_mj, MIN_COST) / s["energy_budget_mj"])))
            p = self.prefs(**prefs)
            ref = None
            if user_rating is not None or all(v is None for v in (latency_ms, energy_mj, accuracy)):
                ref = self.rating_reference(x, arm_id, p, latency_ms, energy_mj, accuracy)
            if user_rating is not None:
                ys.append((2, (user_rating - s["rating_min"]) / (s["rating_max"] - s["rating_min"]) - ref))
            if any(v is not None for v in (latency_ms, energy_mj, user_rating, accuracy)):
                ys.append((3, 0.0))
            else:
                ys.append((2, (reward - s["reward_min"]) / (s["reward_max"] - s["reward_min"]) - ref))
        if self.baseline is not None and self.baseline in self.accuracy:
            p = self.prefs(**prefs)
            base = self.qoe(x, self.baseline, p, 0.0)
            self.played += reward
            self.baseline_total += base
        for t, y in ys:
            mean, _ = self.targets[t].mean_var(x, arm_id)
            self.noise_n[t] += 1
            self.noise_sq[t] += (y - mean) ** 2
            self.targets[t].update(arm_id, x, y)
        if accuracy is not None:
            self.reported[arm_id].append(accuracy)
