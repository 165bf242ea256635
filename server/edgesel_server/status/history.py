"""What the status page draws over time: a bounded in-memory history per space, since the process started.

The server adds to the open sample as it decides (the engine, on the event loop) and as it applies rewards
(the space, on whichever thread applies the log), and a background task closes the sample every `sample_s`
seconds; only the newest `samples` are kept. Nothing here is durable or replicated: a restart starts an empty
history (the page says so), while everything durable the page shows (catalog, arm statistics, lift, guardrail
events) is read from the space itself, which is rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgesel_server.holdout import HOLDOUT

RECENT_FAILURES = 50  # failed runs listed on the page


@dataclass
class Sample:
    """Counts over [start, end)."""

    start: float
    end: float | None = None  # None: still open
    decisions: int = 0  # by the policy (holdout decisions are not the policy's choice)
    exploratory: int = 0
    bonus_sum: float = 0.0
    holdout_decisions: int = 0
    picks: dict[tuple[str, str], int] = field(default_factory=dict)  # (device class, model) -> decisions
    qoe_n: dict[str, int] = field(default_factory=dict)  # report group -> applied rewards
    qoe_sum: dict[str, float] = field(default_factory=dict)
    outcomes: int = 0
    failures: int = 0

    def mean_qoe(self, group: str) -> float | None:
        n = self.qoe_n.get(group, 0)
        return self.qoe_sum[group] / n if n else None

    @property
    def mean_bonus(self) -> float | None:
        return self.bonus_sum / self.decisions if self.decisions else None

    def copy(self) -> Sample:
        return Sample(
            self.start, self.end, self.decisions, self.exploratory, self.bonus_sum, self.holdout_decisions,
            dict(self.picks), dict(self.qoe_n), dict(self.qoe_sum), self.outcomes, self.failures,
        )  # fmt: skip


@dataclass(frozen=True)
class Failure:
    at: float
    model_id: str
    device_class: str
    group: str
    reason: str


@dataclass(frozen=True)
class HistoryView:
    """A consistent copy for the renderer: the closed samples, the open one, the recent failures."""

    started: float
    sample_s: float
    max_samples: int
    closed: list[Sample]
    current: Sample
    failures: list[Failure]

    def picks(self) -> dict[str, dict[str, int]]:
        """device class -> model -> decisions, over every kept sample and the open one."""
        out: dict[str, dict[str, int]] = {}
        for s in (*self.closed, self.current):
            for (cls, model), n in s.picks.items():
                row = out.setdefault(cls, {})
                row[model] = row.get(model, 0) + n
        return out


class SpaceHistory:
    def __init__(self, sample_s: float, samples: int, now: float | None = None) -> None:
        self.sample_s = sample_s
        self.started = time.time() if now is None else now
        self._closed: deque[Sample] = deque(maxlen=samples)
        self._failures: deque[Failure] = deque(maxlen=RECENT_FAILURES)
        self._current = Sample(self.started)
        # Decisions come from the event loop, rewards from the thread applying the log, the page from an
        # HTTP thread: one short lock keeps a sample whole.
        self._lock = threading.Lock()

    def on_decision(
        self, device_class: str, model_id: str, bonus: float, exploratory: bool, group: str
    ) -> None:
        with self._lock:
            s = self._current
            if group == HOLDOUT:
                s.holdout_decisions += 1
                return
            s.decisions += 1
            s.exploratory += exploratory
            s.bonus_sum += bonus
            key = (device_class, model_id)
            s.picks[key] = s.picks.get(key, 0) + 1

    def on_outcome(
        self, group: str, device_class: str, model_id: str, qoe: float, failed: bool, reason: str, at: float
    ) -> None:
        with self._lock:
            s = self._current
            s.outcomes += 1
            s.qoe_n[group] = s.qoe_n.get(group, 0) + 1
            s.qoe_sum[group] = s.qoe_sum.get(group, 0.0) + qoe
            if failed:
                s.failures += 1
                self._failures.append(Failure(at, model_id, device_class, group, reason))

    def roll(self, now: float | None = None) -> Sample:
        """Close the open sample (it joins the history) and open the next one; returns the closed one."""
        now = time.time() if now is None else now
        with self._lock:
            done = self._current
            done.end = now
            self._closed.append(done)
            self._current = Sample(now)
        return done

    def view(self) -> HistoryView:
        with self._lock:
            return HistoryView(
                started=self.started,
                sample_s=self.sample_s,
                max_samples=self._closed.maxlen or 0,
                closed=[s.copy() for s in self._closed],
                current=self._current.copy(),
                failures=list(self._failures),
            )


async def sample_forever(histories: Mapping[str, SpaceHistory], every: float) -> None:
    """Close every space's sample each `every` seconds; runs until cancelled."""
    loop = asyncio.get_running_loop()
    next_at = loop.time() + every
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        # A fixed cadence (a slow pass does not shift later samples), but no burst of empty samples after
        # the loop was held up for longer than one.
        next_at = max(next_at + every, loop.time() + every / 2)
        now = time.time()
        for h in histories.values():
            h.roll(now)
