"""Drift: the ground truth changing mid-run (docs/simulator.md, "Drift").

A scenario's ``[[drift]]`` entries say that from round ``at_round`` on, on some devices (names and/or a
device kind), some models (default: all) run ``latency_factor`` times slower (a firmware / OS / app update, a
delegate that stops working) or fail outright (``fails = true``: the request crashes and reports QoE 0,
like a model that does not fit). The stream's expected and reported QoE after that round come from the
changed truth, so the oracle follows the change and a learner has to.

Recovery (``rounds_to_recover`` in the report): over the requests of the drifted devices, the policy's
windowed QoE is the mean expected QoE of its picks over the last ``RECOVERY_WINDOW`` such requests, the
oracle's the same over its picks; a policy has recovered at the first drifted request at or after
``at_round + RECOVERY_WINDOW`` affected requests (so the window holds only post-drift requests) where its
windowed QoE is ≥ ``RECOVERY_SHARE`` of the oracle's. ``rounds_to_recover`` counts rounds (all requests)
from ``at_round`` to that request; ``None`` if it never happens before the run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

RECOVERY_WINDOW = 100  # affected requests
RECOVERY_SHARE = 0.9


@dataclass(frozen=True)
class Drift:
    at_round: int
    devices: tuple[str, ...] = ()  # device names; empty with device_kind empty = every device
    device_kind: str = ""
    models: tuple[str, ...] = ()  # arm ids; empty = every model
    latency_factor: float = 1.0
    fails: bool = False

    def device_mask(self, names: Sequence[str], kinds: Sequence[str]) -> NDArray:
        """(n_device_types,) bool: the device types this drift applies to."""
        if not self.devices and not self.device_kind:
            return np.ones(len(names), dtype=bool)
        return np.array(
            [n in self.devices or (bool(self.device_kind) and k == self.device_kind)
             for n, k in zip(names, kinds, strict=True)], dtype=bool
        )  # fmt: skip


def parse_drifts(
    raw: Any,
    device_names: Sequence[str],
    device_kinds: Sequence[str],
    arm_ids: Sequence[str],
    err: Any,
    num: Any,
) -> tuple[Drift, ...]:
    """``[[drift]]`` tables (``err(field, problem)`` builds the scenario error, ``num`` checks a number)."""
    if not isinstance(raw, list):
        raise err("drift", "must be an array of tables ([[drift]])")
    allowed = {"at_round", "devices", "device_kind", "models", "latency_factor", "fails"}
    out = []
    for i, d in enumerate(raw):
        where = f"drift[{i}]"
        if not isinstance(d, dict):
            raise err(where, "must be a table")
        for k in d:
            if k not in allowed:
                raise err(f"{where}.{k}", f"unknown field (allowed here: {sorted(allowed)})")
        if "at_round" not in d:
            raise err(f"{where}.at_round", "is required")
        at = int(num(d["at_round"], f"{where}.at_round", 0, 10_000_000, integer=True))
        devices = d.get("devices", [])
        if not isinstance(devices, list) or not all(isinstance(x, str) for x in devices):
            raise err(f"{where}.devices", f"must be a list of device names, got {devices!r}")
        for n in devices:
            if n not in device_names:
                raise err(f"{where}.devices", f"{n!r} is not in fleet.devices")
        kind = d.get("device_kind", "")
        if not isinstance(kind, str) or (kind and kind not in device_kinds):
            raise err(f"{where}.device_kind", f"must be one of the fleet's kinds {sorted(set(device_kinds))}")
        models = d.get("models", [])
        if not isinstance(models, list) or not all(isinstance(x, str) for x in models):
            raise err(f"{where}.models", f"must be a list of model ids, got {models!r}")
        for m in models:
            if m not in arm_ids:
                raise err(f"{where}.models", f"{m!r} is not in the catalog")
        factor = float(num(d.get("latency_factor", 1.0), f"{where}.latency_factor", 1e-3, 1e3))
        fails = d.get("fails", False)
        if not isinstance(fails, bool):
            raise err(f"{where}.fails", f"must be true or false, got {fails!r}")
        if factor == 1.0 and not fails:
            raise err(where, "changes nothing: give latency_factor != 1 and/or fails = true")
        out.append(Drift(at, tuple(devices), kind, tuple(models), factor, fails))
    return tuple(out)


def drift_masks(
    drifts: Sequence[Drift],
    rounds: int,
    dev: NDArray,
    device_names: Sequence[str],
    device_kinds: Sequence[str],
    arm_ids: Sequence[str],
) -> tuple[NDArray, NDArray]:
    """(T, K) latency multiplier and (T, K) bool "fails" of every (round, model) under the drifts."""
    factor = np.ones((rounds, len(arm_ids)))
    fails = np.zeros((rounds, len(arm_ids)), dtype=bool)
    col = {a: j for j, a in enumerate(arm_ids)}
    for d in drifts:
        rows = (np.arange(rounds) >= d.at_round) & d.device_mask(device_names, device_kinds)[dev]
        cols = np.zeros(len(arm_ids), dtype=bool)
        cols[[col[m] for m in d.models] if d.models else slice(None)] = True
        hit = rows[:, None] & cols[None, :]
        factor[hit] *= d.latency_factor
        fails |= hit & d.fails
    return factor, fails


def affected_rows(drift: Drift, dev: NDArray, device_names: Sequence[str], kinds: Sequence[str]) -> NDArray:
    """Round indices of the requests from the drifted devices (before and after the drift)."""
    return np.flatnonzero(drift.device_mask(device_names, kinds)[dev])


def recovery(
    drift: Drift,
    rows: NDArray,
    got: NDArray,
    oracle: NDArray,
    window: int = RECOVERY_WINDOW,
    share: float = RECOVERY_SHARE,
) -> dict[str, Any]:
    """Rounds to recover on the drifted devices (module docstring). ``rows``: their round indices;
    ``got`` / ``oracle``: (T,) expected QoE of the policy's and the oracle's pick per round."""
    before = rows[rows < drift.at_round][-window:]
    after = rows[rows >= drift.at_round]
    out: dict[str, Any] = {
        "at_round": drift.at_round,
        "window_requests": window,
        "ratio_before": round(float(got[before].mean() / oracle[before].mean()), 4) if before.size else None,
        "rounds_to_recover": None,
    }
    if after.size < window:
        return out
    g = np.convolve(got[after], np.ones(window), "valid")
    o = np.convolve(oracle[after], np.ones(window), "valid")
    ratio = g / np.maximum(o, 1e-12)
    out["ratio_first_window"] = round(float(ratio[0]), 4)
    out["ratio_min"] = round(float(ratio.min()), 4)
    hit = np.flatnonzero(ratio >= share)
    if hit.size:
        out["rounds_to_recover"] = int(after[hit[0] + window - 1] - drift.at_round)
    return out
