"""Simulated devices for the bench, with a hidden ground truth so the learning quality can be reported.

The bench may run against any config, so its ground truth is generic: device features are drawn across each
feature's declared range (log-uniformly for "log" features), and a device's expected QoE for a model is
`0.5 + 0.4·tanh(x'ᵀ W m')` over the centred device vector x' = [1, 2x - 1] and model vector
m' = [1, 2m - 1] (x, m normalized to [0, 1] by the space's schema), with a hidden W drawn from the seed.
A report adds Gaussian noise (sd 0.1) and is clipped to [0, 1]. It is a bilinear device×model truth, one
the hybrid model can learn, and different devices prefer different models.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from edgesel_server.config import SpaceConfig
from edgesel_server.schema import FeatureSchema, FeatureSpec

NOISE_SD = 0.1
N_DEVICE_TYPES = 64


def _draw(spec: FeatureSpec, rng: random.Random) -> float:
    if spec.transform == "log":
        return math.exp(rng.uniform(math.log(spec.min), math.log(spec.max)))
    return rng.uniform(spec.min, spec.max)


class BenchFleet:
    def __init__(self, space: SpaceConfig, seed: int = 0) -> None:
        self.space = space
        rng = random.Random(seed)
        self.device_schema = FeatureSchema(space.device_features)
        self.model_schema = FeatureSchema(space.model_features, kind="model")
        # The bench sends numbers only: categorical device features take their schema default.
        numeric = [s for s in space.device_features if isinstance(s, FeatureSpec)]
        self.devices = [{s.name: _draw(s, rng) for s in numeric} for _ in range(N_DEVICE_TYPES)]
        self.model_ids = [m.id for m in space.models]
        nrng = np.random.default_rng(seed)
        d, p = len(self.device_schema) + 1, len(self.model_schema) + 1
        w = nrng.normal(0.0, 4.0 / math.sqrt(d * p), size=(d, p))
        # Centred, so that device x model interactions, not the all-positive scale of the features, decide.
        xs = np.array([np.concatenate([[1.0], 2 * self.device_schema.vector(dv) - 1]) for dv in self.devices])
        ms = np.array(
            [np.concatenate([[1.0], 2 * self.model_schema.vector(m.features) - 1]) for m in space.models]
        )
        self.expected = 0.5 + 0.4 * np.tanh(xs @ w @ ms.T)  # (devices, models)
        self.col = {m: j for j, m in enumerate(self.model_ids)}

    def device_feature_samples(self, n: int) -> list[dict[str, float]]:
        return [self.devices[i % len(self.devices)] for i in range(n)]

    def sample(
        self, rng: random.Random
    ) -> tuple[dict[str, float], Callable[[str], tuple[float, float]], float]:
        """A device's features, its reward function (model id -> (noisy reward, expected QoE)) and the best
        expected QoE it could have had."""
        i = rng.randrange(len(self.devices))
        row = self.expected[i]

        def reward_of(model_id: str) -> tuple[float, float]:
            j = self.col.get(model_id)
            if j is None:  # a model added after the bench started: no ground truth, count it as neutral
                return 0.5, 0.5
            return min(1.0, max(0.0, row[j] + rng.gauss(0.0, NOISE_SD))), float(row[j])

        return self.devices[i], reward_of, float(row.max())

    def learning_report(self, rewards: list[float], regrets: list[float]) -> dict[str, Any]:
        """Mean expected QoE of what the server picked, by quarter of the run, against the oracle and the
        best single model for every device."""
        if not rewards:
            return {}
        r = np.asarray(rewards)
        q = max(1, len(r) // 4)
        return {
            "decisions": len(r),
            "mean_qoe": round(float(r.mean()), 4),
            "mean_qoe_first_quarter": round(float(r[:q].mean()), 4),
            "mean_qoe_last_quarter": round(float(r[-q:].mean()), 4),
            "mean_regret": round(float(np.mean(regrets)), 4),
            "oracle_mean_qoe": round(float(self.expected.max(axis=1).mean()), 4),
            "common_model_mean_qoe": round(float(self.expected.mean(axis=0).max()), 4),
        }
