"""`[space] reward_aggregation`: what a decision with several Feedbacks teaches when its window closes.

Each Feedback of an aggregating space ("mean", "last", "min") is an `Observation` (its QoE reward and the
measurements it carried), recorded in the order the store made them durable. At the window's close they
become one reward and one measurement record (docs/rewards.md):

- "last" and "min" pick one observation (min: the smallest reward, the earliest of equal ones) and use its
  reward and its record: the learner sees a measurement set a device really reported, whose QoE is exactly
  the reward applied;
- "mean": the reward is the mean of the rewards (math.fsum / n: exactly rounded, independent of order), and
  each measurement field is the mean over the observations that reported it, so qoe_model's per-target
  models each learn the average of what was measured (one sample of lower noise); a failed run (QoE: the
  space's minimum) counts in the reward's mean and reports no measurements; the record is `failed` only if
  every observation was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgesel_server.store.base import Observation

MODES = ("mean", "last", "min")


@dataclass(frozen=True)
class Aggregate:
    reward: float
    measurements: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    failure_reason: str = ""
    n: int = 0


def aggregate(mode: str, observations: Sequence[Observation]) -> Aggregate:
    """The aggregate of a decision's observations (at least one), given in the order they were recorded."""
    if not observations:
        raise ValueError("nothing to aggregate")
    n = len(observations)
    if mode == "last":
        return _of(observations[-1], n)
    if mode == "min":
        return _of(min(observations, key=lambda o: o.reward), n)  # min keeps the first of equal ones
    if mode != "mean":
        raise ValueError(f"unknown reward aggregation {mode!r}")
    values: dict[str, list[float]] = {}
    for o in observations:
        for name, value in o.measurements.items():
            values.setdefault(name, []).append(value)
    failed = all(o.failed for o in observations)
    return Aggregate(
        reward=math.fsum(o.reward for o in observations) / n,
        measurements={name: math.fsum(vs) / len(vs) for name, vs in sorted(values.items())},
        failed=failed,
        failure_reason=observations[0].failure_reason if failed else "",
        n=n,
    )


def _of(o: Observation, n: int) -> Aggregate:
    return Aggregate(o.reward, dict(o.measurements), o.failed, o.failure_reason, n)
