"""Simulated users and per-request device state (distributions documented in docs/simulator.md).

Each device instance in the fleet has one user. A user's preference weights over (accuracy, latency, energy)
are drawn from a Dirichlet distribution and sent with every request (the app's preference slider), so the
learner can personalize; the user's rating bias (some people rate harshly) is hidden.
Per-request state is drawn independently for every request: battery level (uniform on a range, battery-
powered devices only; boards on mains report 1.0), thermal state and background load (Beta distributions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class UserModel:
    preference_concentration: tuple[float, float, float] = (2.0, 2.0, 1.0)  # accuracy, latency, energy
    rating_bias_sd: float = 0.03


@dataclass(frozen=True)
class StateModel:
    battery_range: tuple[float, float] = (0.05, 1.0)
    thermal_beta: tuple[float, float] = (1.5, 4.0)  # mean 0.27: usually cool, sometimes hot
    load_beta: tuple[float, float] = (2.0, 5.0)  # mean 0.29


def draw_users(rng: np.random.Generator, n: int, model: UserModel) -> tuple[NDArray, NDArray]:
    """(n, 3) preference weights summing to 1 and (n,) hidden rating biases."""
    prefs = rng.dirichlet(np.asarray(model.preference_concentration, dtype=float), size=n)
    bias = rng.normal(0.0, model.rating_bias_sd, size=n)
    return prefs, bias


def draw_states(
    rng: np.random.Generator, battery_powered: NDArray, model: StateModel
) -> tuple[NDArray, NDArray, NDArray]:
    """Battery, thermal, background load for each request (``battery_powered``: bool per request)."""
    n = battery_powered.shape[0]
    lo, hi = model.battery_range
    battery = np.where(battery_powered, rng.uniform(lo, hi, size=n), 1.0)
    thermal = np.asarray(rng.beta(*model.thermal_beta, size=n))
    load = np.asarray(rng.beta(*model.load_beta, size=n))
    return battery, thermal, load
