"""The QoE function: turns what a device reports into the one reward the bandit learns from.

A device reports either a scalar reward or measurements. Each measurement becomes a score in [0, 1]:

- user rating r on the space's scale [rating_min, rating_max]: (r - rating_min) / (rating_max - rating_min)
- accuracy a in [0, 1]: clip((a - accuracy_floor) / (accuracy_ceiling - accuracy_floor), 0, 1), so the
  spread that matters to users (e.g. 0.55..0.88 top-1) spans the whole score (floor 0, ceiling 1: a itself)
- latency L ms against the budget B (the request's own budget if it set one): max(0, 1 - L / (2B)),
  so meeting the budget exactly scores 0.5 and twice the budget or worse scores 0
- energy E mJ against the energy budget: max(0, 1 - E / (2B)) likewise

The reward is the weighted mean of the scores present (weights renormalized over what was reported, so a
device that only measures latency still teaches something), then mapped onto [reward_min, reward_max].
docs/qoe.md walks through every term with numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgesel_server.errors import InvalidReward

MEASUREMENTS = ("user_rating", "latency_ms", "energy_mj", "accuracy")


class RewardError(InvalidReward):
    """A Feedback's QoE is missing, not finite or out of range."""


@dataclass(frozen=True)
class QoeFunction:
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"user_rating": 1.0, "latency_ms": 1.0, "energy_mj": 0.5, "accuracy": 1.0}
    )
    rating_min: float = 1.0
    rating_max: float = 5.0
    latency_budget_ms: float = 100.0
    energy_budget_mj: float = 500.0
    reward_min: float = 0.0
    reward_max: float = 1.0
    # Accuracy at or below the floor scores 0, at or above the ceiling 1 (the simulator's names, in [0, 1]).
    accuracy_floor: float = 0.0
    accuracy_ceiling: float = 1.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(MEASUREMENTS)
        if unknown:
            raise ValueError(
                f"qoe weights for unknown measurements: {sorted(unknown)}; known: {MEASUREMENTS}"
            )
        if any(not math.isfinite(w) or w < 0 for w in self.weights.values()):
            raise ValueError("qoe weights must be finite and >= 0")
        if not sum(self.weights.values()) > 0:
            raise ValueError("at least one qoe weight must be > 0")
        if not self.rating_min < self.rating_max:
            raise ValueError("qoe rating_min must be < rating_max")
        if not (self.latency_budget_ms > 0 and self.energy_budget_mj > 0):
            raise ValueError("qoe latency_budget_ms and energy_budget_mj must be > 0")
        if not self.reward_min < self.reward_max:
            raise ValueError("qoe reward_min must be < reward_max")
        if not 0.0 <= self.accuracy_floor < self.accuracy_ceiling <= 1.0:
            raise ValueError(
                "qoe accuracy_floor and accuracy_ceiling are accuracies (fractions): need "
                f"0 <= accuracy_floor < accuracy_ceiling <= 1, got {self.accuracy_floor:g} and "
                f"{self.accuracy_ceiling:g}"
            )

    def check_reward(self, reward: float) -> float:
        if not math.isfinite(reward):
            raise RewardError(f"reward is {reward}, it must be a finite number")
        if not self.reward_min <= reward <= self.reward_max:
            raise RewardError(f"reward {reward:g} is outside [{self.reward_min:g}, {self.reward_max:g}]")
        return reward

    def check_measurement(self, name: str, value: float) -> None:
        """Raises RewardError unless `value` is a valid `name` measurement (known, finite, in range)."""
        if name not in MEASUREMENTS:
            raise RewardError(f"unknown measurement {name!r}; known: {', '.join(MEASUREMENTS)}")
        if not math.isfinite(value):
            raise RewardError(f"measurement {name} is {value}, it must be a finite number")
        self._score(name, value, None)

    def reward(
        self,
        measurements: Mapping[str, float],
        *,
        latency_budget_ms: float | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> float:
        """Reward from measurements; `latency_budget_ms` and `weights` are the request's preferences."""
        w = dict(self.weights)
        if weights:
            w.update({k: v for k, v in weights.items() if k in MEASUREMENTS})
        scores: dict[str, float] = {}
        for name, value in measurements.items():
            if name not in MEASUREMENTS:
                raise RewardError(f"unknown measurement {name!r}; known: {', '.join(MEASUREMENTS)}")
            if not math.isfinite(value):
                raise RewardError(f"measurement {name} is {value}, it must be a finite number")
            scores[name] = self._score(name, value, latency_budget_ms)
        if not scores:
            raise RewardError("feedback carries neither a reward nor any measurement")
        total_w = sum(w.get(n, 0.0) for n in scores)
        if total_w <= 0:
            raise RewardError(
                f"the space gives zero weight to every reported measurement ({', '.join(scores)})"
            )
        value = sum(w.get(n, 0.0) * s for n, s in scores.items()) / total_w
        lo, hi = self.reward_min, self.reward_max
        return min(hi, max(lo, lo + value * (hi - lo)))

    def _score(self, name: str, value: float, latency_budget_ms: float | None) -> float:
        if name == "user_rating":
            if not self.rating_min <= value <= self.rating_max:
                raise RewardError(
                    f"user_rating {value:g} is outside [{self.rating_min:g}, {self.rating_max:g}]"
                )
            return (value - self.rating_min) / (self.rating_max - self.rating_min)
        if name == "accuracy":
            if not 0.0 <= value <= 1.0:
                raise RewardError(f"accuracy {value:g} is outside [0, 1]")
            span = self.accuracy_ceiling - self.accuracy_floor
            return min(1.0, max(0.0, (value - self.accuracy_floor) / span))
        if value < 0:
            raise RewardError(f"{name} {value:g} is negative")
        budget = latency_budget_ms if name == "latency_ms" and latency_budget_ms else None
        if budget is None:
            budget = self.latency_budget_ms if name == "latency_ms" else self.energy_budget_mj
        return max(0.0, 1.0 - value / (2.0 * budget))
