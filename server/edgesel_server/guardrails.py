"""Guardrails: withdraw a model from a device class where it fails too often or is too slow.

Per space (`[space.guardrails]`): `max_failure_rate` (share of the model's last `window` decisions on that
device class whose Feedback said it did not run) and `max_p95_latency_ratio` (p95 of its measured latency on
that class over the holdout's p95 on the same class, each over their last `window` observations; off without
a holdout). A pair is judged once it has `min_observations` in its window. A breach withdraws the model from
that device class: it is no longer offered there until the operator lifts it.

The state is a pure function of the log: it changes only when a Feedback (or default reward) is applied, in
log order, and when a lift event is applied, so every replica withdraws the same pair at the same log
position and a restart rebuilds it (it is also kept in the snapshot, `to_dict`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GuardrailConfig:
    max_failure_rate: float | None = None
    max_p95_latency_ratio: float | None = None
    window: int = 200
    min_observations: int = 30

    def __post_init__(self) -> None:
        if self.max_failure_rate is not None and not 0.0 <= self.max_failure_rate < 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1), got {self.max_failure_rate}")
        if self.max_p95_latency_ratio is not None and not (
            math.isfinite(self.max_p95_latency_ratio) and self.max_p95_latency_ratio > 0
        ):
            raise ValueError(f"max_p95_latency_ratio must be > 0, got {self.max_p95_latency_ratio}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 1 <= self.min_observations <= self.window:
            raise ValueError(
                f"min_observations must be in [1, window={self.window}], got {self.min_observations}"
            )

    @property
    def enabled(self) -> bool:
        return self.max_failure_rate is not None or self.max_p95_latency_ratio is not None


@dataclass(frozen=True)
class Breach:
    model_id: str
    device_class: str
    reason: str  # "failure_rate" | "p95_latency_ratio"
    value: float  # the measured rate or ratio
    limit: float
    seq: int  # log position of the Feedback that tipped it
    created: float  # that Feedback's time


def p95(values: deque[float] | list[float]) -> float | None:
    """Nearest-rank 95th percentile (exact: windows are small)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


class Guardrails:
    def __init__(self, cfg: GuardrailConfig) -> None:
        self.cfg = cfg
        # (model, class) -> last `window` outcomes: (failed, latency or None)
        self._pairs: dict[tuple[str, str], deque[tuple[bool, float | None]]] = {}
        self._holdout: dict[str, deque[float]] = {}  # class -> last `window` holdout latencies
        self.withdrawn: dict[tuple[str, str], Breach] = {}
        self.history: list[dict[str, Any]] = []  # breaches and lifts in log order, for the report

    def is_withdrawn(self, model_id: str, device_class: str) -> bool:
        return (model_id, device_class) in self.withdrawn

    def withdrawn_in(self, device_class: str) -> set[str]:
        return {m for (m, c) in self.withdrawn if c == device_class}

    def observe(
        self,
        *,
        model_id: str,
        device_class: str,
        holdout: bool,
        failed: bool,
        latency_ms: float | None,
        seq: int,
        created: float,
    ) -> Breach | None:
        """One applied outcome; returns the breach it caused, if any."""
        if not self.cfg.enabled:
            return None
        w = self.cfg.window
        if holdout:
            if latency_ms is not None and not failed:
                self._holdout.setdefault(device_class, deque(maxlen=w)).append(latency_ms)
            return None
        key = (model_id, device_class)
        win = self._pairs.setdefault(key, deque(maxlen=w))
        win.append((failed, latency_ms))
        if key in self.withdrawn or len(win) < self.cfg.min_observations:
            return None
        breach = self._judge(key, win, seq, created)
        if breach is not None:
            self.withdrawn[key] = breach
            self.history.append({"event": "withdrawn", **asdict(breach)})
        return breach

    def _judge(
        self, key: tuple[str, str], win: deque[tuple[bool, float | None]], seq: int, created: float
    ) -> Breach | None:
        cfg = self.cfg
        if cfg.max_failure_rate is not None:
            rate = sum(f for f, _ in win) / len(win)
            if rate > cfg.max_failure_rate:
                return Breach(key[0], key[1], "failure_rate", rate, cfg.max_failure_rate, seq, created)
        if cfg.max_p95_latency_ratio is not None:
            mine = [lat for f, lat in win if not f and lat is not None]
            base = self._holdout.get(key[1])
            if len(mine) >= cfg.min_observations and base is not None and len(base) >= cfg.min_observations:
                p_mine, p_base = p95(mine), p95(base)
                assert p_mine is not None and p_base is not None
                ratio = p_mine / p_base if p_base > 0 else math.inf
                if ratio > cfg.max_p95_latency_ratio:
                    return Breach(
                        key[0], key[1], "p95_latency_ratio", ratio, cfg.max_p95_latency_ratio, seq, created
                    )
        return None

    def lift(self, model_id: str, device_class: str, *, seq: int, created: float) -> bool:
        """The operator lifts a withdrawal: the pair is offered again and starts a fresh window."""
        key = (model_id, device_class)
        if self.withdrawn.pop(key, None) is None:
            return False
        self._pairs.pop(key, None)
        self.history.append(
            {
                "event": "lifted",
                "model_id": model_id,
                "device_class": device_class,
                "seq": seq,
                "created": created,
            }
        )
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": [[m, c, [[f, lat] for f, lat in win]] for (m, c), win in sorted(self._pairs.items())],
            "holdout": [[c, list(win)] for c, win in sorted(self._holdout.items())],
            "withdrawn": [asdict(b) for _, b in sorted(self.withdrawn.items())],
            "history": list(self.history),
        }

    def load(self, d: Mapping[str, Any]) -> None:
        w = self.cfg.window
        self._pairs = {
            (m, c): deque(((bool(f), lat) for f, lat in win), maxlen=w) for m, c, win in d["pairs"]
        }
        self._holdout = {c: deque(win, maxlen=w) for c, win in d["holdout"]}
        self.withdrawn = {(b["model_id"], b["device_class"]): Breach(**b) for b in d["withdrawn"]}
        self.history = list(d["history"])
