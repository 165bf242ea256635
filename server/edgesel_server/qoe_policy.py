"""What the `qoe_model` policy needs from the server: the space's QoE function as the core's spec, each
catalog model's known accuracy, and the feedback record that carries the raw measurements into the log.

A feedback log event's payload (empty in logs written before measurements were logged) is JSON:

    {"v": 1, "measurements": {"latency_ms": 41.2, ...}, "failed": false, "failure_reason": "",
     "prefs": {"latency_budget_ms": 50.0, "qoe_weights": {...}, "installation_id": "..."}}

so replaying the log teaches the per-target models exactly what the live server taught them. An event with
an empty payload (an old log, a default reward) teaches the scalar reward alone (docs/core.md). A failed
run's installation id keeps the model away from that installation (failed_pairs.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgesel_server.catalog import Model
from edgesel_server.core import QoeModel
from edgesel_server.qoe import QoeFunction, RewardError
from edgesel_server.store.base import LogEvent

FEEDBACK_RECORD_VERSION = 1
FAILURE_REASONS = ("load_error", "out_of_memory", "unsupported_op", "timeout", "other")


def core_spec(qoe: QoeFunction) -> dict:
    """The server's QoE function (linear latency/energy scores against budgets) as a `QoeModel` spec."""
    return {
        "weights": {
            k: float(qoe.weights.get(k, 0.0)) for k in ("user_rating", "latency_ms", "energy_mj", "accuracy")
        },
        "rating_min": qoe.rating_min,
        "rating_max": qoe.rating_max,
        "latency_budget_ms": qoe.latency_budget_ms,
        "latency_shape": "linear",
        "energy_budget_mj": qoe.energy_budget_mj,
        "energy_shape": "linear",
        "accuracy_floor": qoe.accuracy_floor,
        "accuracy_ceiling": qoe.accuracy_ceiling,
        "reward_min": qoe.reward_min,
        "reward_max": qoe.reward_max,
    }


def catalog_accuracy(model: Model) -> float | None:
    """A model's known accuracy as a fraction: its `accuracy` feature, else `top1` (percent) / 100."""
    f = model.features
    if "accuracy" in f and 0.0 <= f["accuracy"] <= 1.0:
        return float(f["accuracy"])
    if "top1" in f and 0.0 <= f["top1"] <= 100.0:
        return float(f["top1"]) / 100.0
    return None


def check_feedback(
    qoe: QoeFunction, measurements: Mapping[str, float], failed: bool, failure_reason: str
) -> None:
    """Rejects what the QoE function or the learner could not take (named by field), before anything is
    logged: every measurement is checked even when a scalar reward is given."""
    if failure_reason and failure_reason not in FAILURE_REASONS:
        raise RewardError(
            f"failure_reason {failure_reason!r} is unknown; known: {', '.join(FAILURE_REASONS)}"
        )
    if failure_reason and not failed:
        raise RewardError("failure_reason is set but failed is not", field="measurements.failure_reason")
    if failed and measurements:
        raise RewardError(
            f"failed: a model that did not run cannot report {', '.join(sorted(measurements))}",
            field=f"measurements.{sorted(measurements)[0]}",
        )
    for name, value in measurements.items():
        qoe.check_measurement(name, value)


def feedback_record(
    measurements: Mapping[str, float], failed: bool, failure_reason: str, prefs: Mapping
) -> dict[str, Any]:
    """The learner's measurement record of a Feedback, as it goes into its event's payload (JSON, encoded
    once with the rest of the payload: Engine._reward_event)."""
    return {
        "v": FEEDBACK_RECORD_VERSION,
        "measurements": dict(measurements),
        "failed": failed,
        "failure_reason": failure_reason,
        "prefs": dict(prefs),
    }


def learn_record(model: QoeModel, arm_id: str, x, reward: float, record: Mapping) -> None:
    """Applies one feedback log event, its payload parsed, to the per-target models (see the module
    docstring)."""
    if "v" not in record:  # a scalar reward (the payload, if any, holds only the report's outcome)
        model.update(arm_id, x, reward)
        return
    if record.get("v") != FEEDBACK_RECORD_VERSION:
        raise ValueError(f"feedback record version {record.get('v')!r} is not supported")
    m = record.get("measurements", {})
    prefs = record.get("prefs", {})
    weights = prefs.get("qoe_weights") or None
    model.update(
        arm_id,
        x,
        reward,
        latency_ms=m.get("latency_ms"),
        energy_mj=m.get("energy_mj"),
        user_rating=m.get("user_rating"),
        accuracy=m.get("accuracy"),
        failed=bool(record.get("failed", False)),
        latency_budget_ms=prefs.get("latency_budget_ms"),
        weights=weights,
    )


def learn_records(model: QoeModel, events: Sequence[LogEvent], records: Sequence[Mapping]) -> int:
    """`learn_record` of each event (its payload parsed) in order, through one `QoeModel.update_batch`, with
    exactly its result. Returns how many were learned: all, or those before the first one the batch cannot
    take (the model refuses it, or its record holds what only `learn_record` handles: another version, a
    measurement that is not a float, NaN); `learn_record` of that one learns it or raises why not."""
    n = len(events)
    columns: list[list[float]] = [[], [], [], [], []]  # latency, energy, rating, accuracy, latency budget
    failed: list[bool] = []
    weights: list[dict | None] = []
    for record in records:
        if "v" not in record:  # a scalar reward: update(arm, x, reward) alone
            row, fail, w = [_NOT_GIVEN] * 5, False, None
        else:
            m, prefs = record.get("measurements", {}), record.get("prefs", {})
            if record.get("v") != FEEDBACK_RECORD_VERSION or type(m) is not dict or type(prefs) is not dict:
                n = len(failed)
                break
            w = prefs.get("qoe_weights") or None
            given = [m.get("latency_ms"), m.get("energy_mj"), m.get("user_rating"), m.get("accuracy")]
            row = [v for v in map(_batch_float, [*given, prefs.get("latency_budget_ms")]) if v is not None]
            if len(row) < 5 or (w is not None and type(w) is not dict):
                n = len(failed)
                break
            fail = bool(record.get("failed", False))
        failed.append(fail)
        weights.append(w)
        for column, v in zip(columns, row, strict=True):
            column.append(v)
    if n == 0:
        return 0
    lat, energy, rating, accuracy, budget = (np.array(c, dtype=np.float64) for c in columns)
    no_energy_budget = np.full(n, _NOT_GIVEN)  # learn_record passes none
    return model.update_batch(
        [e.model_id for e in events[:n]],
        # np.array, not np.stack: one C loop over the rows (~0.1 vs ~0.3 us per row), the same values.
        np.array([e.x for e in events[:n]], dtype=np.float64),
        np.array([e.reward for e in events[:n]], dtype=np.float64),
        latency_ms=lat,
        energy_mj=energy,
        user_rating=rating,
        accuracy=accuracy,
        failed=failed,
        latency_budget_ms=budget,
        energy_budget_mj=no_energy_budget,
        weights=weights if any(w is not None for w in weights) else None,
    )


_NOT_GIVEN = math.nan  # update_batch's "not given" (a NaN measurement itself never reaches the batch)


def _batch_float(v: object) -> float | None:
    """A record's value as update_batch takes it: NaN for absent, the float itself, None for what only
    update() reads as learn_record passes it (other types, NaN)."""
    if v is None:
        return _NOT_GIVEN
    if type(v) is float:
        return v if v == v else None
    if type(v) is int and abs(v) <= 2**53:  # exactly a float (larger ones: update() says why not)
        return float(v)
    return None


def failed_installation_of(record: Mapping) -> str:
    """The installation a failed run was reported from, given an event's parsed payload ("" when the event is
    no failure or has none)."""
    if not record.get("failed"):
        return ""
    return str(record.get("prefs", {}).get("installation_id", ""))
