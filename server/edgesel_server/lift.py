"""Policy-vs-holdout outcome statistics: mean QoE, latency quantiles, failure rate and the lift with its 95 %
confidence interval, per device class, since start and over a sliding window.

Everything here is a pure function of the observations fed in, in the order fed in, so a report rebuilt by
replaying the log equals the one the server kept live, and replicas that apply the same log agree. The state
is plain numbers (`to_dict` / `from_dict`) so it rides in the space's snapshot.

Lift = mean QoE(policy) − mean QoE(holdout), with the interval ±z·sqrt(V_p + V_h), z the normal quantile (1.96
for 95 %). The groups are independent (a device is in one group for good), but the requests of one device are
not: the same user, the same unit, the same budget. Since the holdout is drawn by device, the uncertainty of
the lift is the devices', so each group's variance of the mean V is clustered by device: devices are hashed
into `BUCKETS` groups (holdout.variance_bucket; every request of a device lands in the same bucket) and
V = K/(K−1) · Σ_b (S_b − n_b·ȳ)² / n² over the K non-empty buckets (the cluster-robust CR1 sandwich with
buckets as clusters; buckets are unions of devices, so they are independent). With one observation per
bucket this is Welch's s²/n. Treating requests as independent instead (Welch over requests) gives intervals
about half as wide as the fleet-level lift's spread on the AI Hub scenario (docs/holdout.md). A cell with
observations added without a bucket (state from before buckets, direct use of this module) or with a single
bucket falls back to Welch's s²/n. With fewer than `MIN_N` observations in a group no interval is given.
The relative lift (lift / mean of the holdout) uses the delta method with the same V.

Latency quantiles come from a log-bucketed histogram (relative accuracy 1 %, the DDSketch mapping: bucket
i holds values in (γ^(i−1), γ^i] with γ = 1.01/0.99), which is bounded in memory, mergeable across
time slots and exactly serializable; the `ddsketch` package implements the same mapping but its only
serialization is protobuf messages generated for an older protobuf runtime.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("policy", "holdout")
Z95 = 1.959963984540054  # standard normal 97.5 % quantile
MIN_N = 2
BUCKETS = 64  # device hash groups of the variance: 63 degrees of freedom at most (t quantile 2.00 vs 1.96)
RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_LATENCY_MS = 1e-3  # latencies below a microsecond share the lowest bucket


@dataclass
class LatencyHistogram:
    """Log-bucketed counts of latencies (ms); quantiles to within 1 % relative error."""

    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0

    @staticmethod
    def bucket(value_ms: float) -> int:
        return math.ceil(math.log(max(value_ms, _MIN_LATENCY_MS)) / _LOG_GAMMA)

    def add(self, value_ms: float) -> None:
        b = self.bucket(value_ms)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1

    def merge(self, other: LatencyHistogram) -> None:
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c
        self.n += other.n

    def quantile(self, q: float) -> float | None:
        """The value at rank ceil(q·n) (nearest-rank), as its bucket's midpoint 2γ^i/(γ+1)."""
        if self.n == 0:
            return None
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return 2.0 * _GAMMA**b / (_GAMMA + 1.0)
        raise AssertionError("unreachable: ranks are within n")


@dataclass
class Outcomes:
    """Sufficient statistics of one (group, device class) cell."""

    n: int = 0
    qoe_sum: float = 0.0
    qoe_sumsq: float = 0.0
    failures: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    # device bucket -> [n, qoe sum] (the clustered variance); only observations added with a bucket
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def add(self, qoe: float, latency_ms: float | None, failed: bool, bucket: int | None = None) -> None:
        latency_bucket = None if latency_ms is None or failed else LatencyHistogram.bucket(latency_ms)
        self.add_bucketed(qoe, latency_bucket, failed, bucket)

    def add_bucketed(self, qoe: float, latency_bucket: int | None, failed: bool, bucket: int | None) -> None:
        """`add` with the latency's histogram bucket already computed (None: no latency to count)."""
        self.n += 1
        self.qoe_sum += qoe
        self.qoe_sumsq += qoe * qoe
        self.failures += int(failed)
        if latency_bucket is not None:
            hist = self.latency
            hist.counts[latency_bucket] = hist.counts.get(latency_bucket, 0) + 1
            hist.n += 1
        if bucket is not None:
            cell = self.buckets.get(bucket)  # not setdefault(bucket, [0, 0.0]): no list made per call
            if cell is None:
                cell = self.buckets[bucket] = [0, 0.0]
            cell[0] += 1
            cell[1] += qoe

    def merge(self, other: Outcomes) -> None:
        self.n += other.n
        self.qoe_sum += other.qoe_sum
        self.qoe_sumsq += other.qoe_sumsq
        self.failures += other.failures
        self.latency.merge(other.latency)
        for b, (n, s) in other.buckets.items():
            cell = self.buckets.setdefault(b, [0, 0.0])
            cell[0] += n
            cell[1] += s

    @property
    def mean(self) -> float | None:
        return self.qoe_sum / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """Unbiased sample variance (clamped at 0 against round-off)."""
        if self.n < 2:
            return None
        return max(0.0, (self.qoe_sumsq - self.qoe_sum * self.qoe_sum / self.n) / (self.n - 1))

    @property
    def variance_of_mean(self) -> float | None:
        """V: clustered by device bucket when every observation has one and there are ≥ 2 buckets, else
        s²/n."""
        var = self.variance
        if var is None:
            return None
        k = len(self.buckets)
        if k < 2 or sum(int(n) for n, _ in self.buckets.values()) != self.n:
            return var / self.n
        mean = self.qoe_sum / self.n
        # in bucket order, not insertion order: a report rebuilt from a snapshot sums exactly as the live one
        ssq = sum((s - n * mean) ** 2 for _, (n, s) in sorted(self.buckets.items()))
        return k / (k - 1) * ssq / (self.n * self.n)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean_qoe": self.mean,
            "p50_latency_ms": self.latency.quantile(0.5),
            "p95_latency_ms": self.latency.quantile(0.95),
            "failure_rate": self.failures / self.n if self.n else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "qoe_sum": self.qoe_sum,
            "qoe_sumsq": self.qoe_sumsq,
            "failures": self.failures,
            "latency": {str(b): c for b, c in sorted(self.latency.counts.items())},
            "buckets": {str(b): [int(n), s] for b, (n, s) in sorted(self.buckets.items())},
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Outcomes:
        counts = {int(b): int(c) for b, c in d.get("latency", {}).items()}
        return Outcomes(
            int(d["n"]),
            float(d["qoe_sum"]),
            float(d["qoe_sumsq"]),
            int(d["failures"]),
            LatencyHistogram(counts, sum(counts.values())),
            {int(b): [int(n), float(s)] for b, (n, s) in d.get("buckets", {}).items()},
        )


@dataclass(frozen=True)
class Lift:
    absolute: float
    ci95: tuple[float, float]
    relative: float | None
    relative_ci95: tuple[float, float] | None


def lift(policy: Outcomes, holdout: Outcomes, z: float = Z95) -> Lift | None:
    """Interval of mean(policy) − mean(holdout) (variances of the means clustered by device bucket, see the
    module docstring); None when either group has fewer than MIN_N."""
    if policy.n < MIN_N or holdout.n < MIN_N:
        return None
    mp, mh = policy.mean, holdout.mean
    vp, vh = policy.variance_of_mean, holdout.variance_of_mean
    assert mp is not None and mh is not None and vp is not None and vh is not None
    diff = mp - mh
    se = math.sqrt(vp + vh)
    rel = rel_ci = None
    if mh != 0.0:
        # delta method for (mp / mh) − 1: var ≈ V_p/mh² + mp² V_h/mh⁴
        rel = mp / mh - 1.0
        rel_se = math.sqrt(vp / (mh * mh) + mp * mp * vh / mh**4)
        rel_ci = (rel - z * rel_se, rel + z * rel_se)
    return Lift(diff, (diff - z * se, diff + z * se), rel, rel_ci)


class LiftTracker:
    """Outcomes per (group, device class): since start, and over the last `window_s` seconds in `slots`
    time slots (the window slides by one slot: an observation leaves it between window_s − slot and window_s
    after it was made)."""

    def __init__(self, window_s: float = 3600.0, slots: int = 60) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.window_s = float(window_s)
        self.slots = int(slots)
        self.slot_s = self.window_s / self.slots
        self.total: dict[tuple[str, str], Outcomes] = {}
        # slot index (floor(t / slot_s)) -> cell -> outcomes; only the last `slots` indices are kept
        self.recent: dict[int, dict[tuple[str, str], Outcomes]] = {}
        self._oldest: int | None = None  # min(recent), or None: not known (recomputed by the next trim)

    def add(
        self,
        group: str,
        device_class: str,
        *,
        qoe: float,
        latency_ms: float | None,
        failed: bool,
        at: float,
        bucket: int | None = None,
    ) -> None:
        """`bucket`: the device's variance bucket (holdout.variance_bucket), in [0, BUCKETS)."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        if bucket is not None and not 0 <= bucket < BUCKETS:
            raise ValueError(f"bucket must be in [0, {BUCKETS}), got {bucket}")
        self.add_many([(group, device_class, qoe, latency_ms, failed, at, bucket)])

    def add_many(self, rows: Iterable[tuple[str, str, float, float | None, bool, float, int | None]]) -> None:
        """`add` of each (group, device_class, qoe, latency_ms, failed, at, bucket) in order, with exactly its
        result, for rows already checked as `add` checks them: a replica applies a batch of rewards in one
        call (this is per-event work, so the loop keeps its lookups local)."""
        total, recent, slot_s, slots = self.total, self.recent, self.slot_s, self.slots
        latency_bucket = LatencyHistogram.bucket
        for group, device_class, qoe, latency_ms, failed, at, bucket in rows:
            lb = None if latency_ms is None or failed else latency_bucket(latency_ms)
            cell = (group, device_class)
            # get-then-create, not setdefault(cell, Outcomes()): this runs for every reward a replica applies.
            o = total.get(cell)
            if o is None:
                o = total[cell] = Outcomes()
            o.add_bucketed(qoe, lb, failed, bucket)
            slot = math.floor(at / slot_s)
            cells = recent.get(slot)
            if cells is None:
                cells = recent[slot] = {}
                if self._oldest is not None and slot < self._oldest:
                    self._oldest = slot
            o = cells.get(cell)
            if o is None:
                o = cells[cell] = Outcomes()
            o.add_bucketed(qoe, lb, failed, bucket)
            if self._oldest is None or self._oldest <= slot - slots:
                self._trim(slot)  # something may be old enough to leave the window

    def _trim(self, newest: int) -> None:
        if self._oldest is not None and self._oldest > newest - self.slots:
            return  # nothing is old enough to leave
        for s in [s for s in self.recent if s <= newest - self.slots]:
            del self.recent[s]
        self._oldest = min(self.recent) if self.recent else None

    def window(self, now: float) -> dict[tuple[str, str], Outcomes]:
        first = math.floor(now / self.slot_s) - self.slots + 1
        out: dict[tuple[str, str], Outcomes] = {}
        for s, cells in self.recent.items():
            if s >= first:
                for cell, o in cells.items():
                    out.setdefault(cell, Outcomes()).merge(o)
        return out

    def report(self, now: float) -> dict[str, Any]:
        """{"since_start", "window"}: each {"classes": {class: {policy, holdout, lift}}, "all": pooled}."""
        return {
            "window_s": self.window_s,
            "since_start": _report_cells(self.total),
            "window": _report_cells(self.window(now)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "slots": self.slots,
            "total": [[g, c, o.to_dict()] for (g, c), o in sorted(self.total.items())],
            "recent": [
                [s, g, c, o.to_dict()]
                for s, cells in sorted(self.recent.items())
                for (g, c), o in sorted(cells.items())
            ],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> LiftTracker:
        t = LiftTracker(float(d["window_s"]), int(d["slots"]))
        for g, c, o in d.get("total", []):
            t.total[(g, c)] = Outcomes.from_dict(o)
        for s, g, c, o in d.get("recent", []):
            t.recent.setdefault(int(s), {})[(g, c)] = Outcomes.from_dict(o)
        return t


def _lift_dict(p: Outcomes, h: Outcomes) -> dict[str, Any] | None:
    lf = lift(p, h)
    if lf is None:
        return None
    return {
        "absolute": lf.absolute,
        "ci95": list(lf.ci95),
        "relative": lf.relative,
        "relative_ci95": list(lf.relative_ci95) if lf.relative_ci95 else None,
    }


def _report_cells(cells: Mapping[tuple[str, str], Outcomes]) -> dict[str, Any]:
    classes = sorted({c for _, c in cells})
    out: dict[str, Any] = {"classes": {}}
    pooled = {g: Outcomes() for g in GROUPS}
    for c in classes:
        p, h = cells.get(("policy", c), Outcomes()), cells.get(("holdout", c), Outcomes())
        pooled["policy"].merge(p)
        pooled["holdout"].merge(h)
        out["classes"][c] = {"policy": p.summary(), "holdout": h.summary(), "lift": _lift_dict(p, h)}
    out["all"] = {
        "policy": pooled["policy"].summary(),
        "holdout": pooled["holdout"].summary(),
        "lift": _lift_dict(pooled["policy"], pooled["holdout"]),
    }
    return out


def pooled_lift(observations: Iterable[tuple[str, float]]) -> Lift | None:
    """Lift from (group, qoe) pairs (a convenience for tests and the simulator's ground truth)."""
    cells = {g: Outcomes() for g in GROUPS}
    for g, q in observations:
        cells[g].add(q, None, False)
    return lift(cells["policy"], cells["holdout"])
