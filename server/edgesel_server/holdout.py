"""Who is in the holdout, and which device class a request belongs to (docs/holdout.md).

Both are pure functions of the request, so every replica and every restart agrees without any state:
- a device is in the holdout iff the first 8 bytes of sha256("<space>\\0<installation id>"), read as a
  big-endian integer over 2^64, are below the space's `share`. The space name is in the hash so that a device
  held out of one space is not held out of every space. Requests without an installation id are never in the
  holdout: there is nothing stable to hash, and a per-request coin would put one device in both groups;
- the device class is the value of the space's `[space.report] device_class` feature in the request: a
  categorical feature's label, a numeric feature's value rounded to an integer ("4" cores, "8" GB), or
  "unknown" when the request does not send it; without `device_class`, every device is in the class "all";
- the report's variance bucket (lift.py) is sha256("<space>\0variance\0<installation id>") mod BUCKETS, a
  hash independent of the holdout's, so all requests of a device share a bucket and each group's devices
  spread evenly over the buckets; a request without an installation id is its own device (its event id).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from edgesel_server.lift import BUCKETS
from edgesel_server.store.base import Decision

ALL_DEVICES = "all"
UNKNOWN_CLASS = "unknown"
# The groups a decision can be in. "excluded": a holdout device for which the incumbent was not eligible; the
# policy decided (and learns from it), but it is in neither group of the report, so that the holdout group
# stays "devices that got the incumbent" and the policy group stays "devices outside the holdout".
POLICY = "policy"
HOLDOUT = "holdout"
EXCLUDED = "excluded"
DECISION_GROUPS = (POLICY, HOLDOUT, EXCLUDED)


def holdout_fraction(space: str, installation_id: str) -> float:
    """A number in [0, 1) that is uniform over installation ids and fixed for one (space, installation)."""
    digest = hashlib.sha256(f"{space}\0{installation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_holdout(space: str, installation_id: str, share: float) -> bool:
    return bool(installation_id) and holdout_fraction(space, installation_id) < share


def variance_bucket(space: str, device_key: str) -> int:
    """The device's bucket of the report's clustered variance, in [0, BUCKETS)."""
    digest = hashlib.sha256(f"{space}\0variance\0{device_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def device_class(feature: str | None, features: Mapping[str, float], labels: Mapping[str, str]) -> str:
    if feature is None:
        return ALL_DEVICES
    if feature in labels:
        return str(labels[feature])
    value = features.get(feature)
    if value is None or not math.isfinite(value):
        return UNKNOWN_CLASS
    return str(round(value))


def outcome_payload(d: Decision, measurements: Mapping[str, float], failed: bool = False) -> dict[str, Any]:
    """What a reward event carries for the report and the guardrails (its `payload`, as JSON): the
    decision's group, device class and variance bucket, so that applying the log needs nothing but the log,
    the measured latency, and whether the device said the model did not run."""
    latency = measurements.get("latency_ms")
    return {
        "group": d.group,
        "device_class": d.device_class,
        "bucket": variance_bucket(d.space, d.prefs.get("installation_id") or d.event_id),
        "latency_ms": float(latency) if latency is not None and math.isfinite(latency) else None,
        "failed": failed,
    }
