"""A space's decisions that wait for feedback, and its counters: owned by the event loop, never locked.

The learned state (catalog, bandit, per-arm counters, applied seq) belongs to `SpaceRuntime` and is written
only by the store's thread that applies committed log events; what lives here is written only by the
asyncio loop (Select, Feedback, the background sweep), so neither needs the other's lock.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import asdict, dataclass

from edgesel_server.store.base import Decision


@dataclass
class SpaceStats:
    """What one space did since this process started (Prometheus counters)."""

    decisions: int = 0
    exploratory: int = 0
    feedback: int = 0
    duplicates: int = 0
    expired: int = 0
    defaults_applied: int = 0
    deferred: int = 0  # decisions made with defer_activation
    activated: int = 0  # ... activated here
    never_activated: int = 0  # ... whose activation deadline passed while this process held them

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PendingDecisions:
    """Decisions whose feedback window is open, in deadline order, at most `limit`; and the expired ones whose
    default reward could not be stored yet (tried again on the next sweep).

    New decisions arrive in deadline order (a space has one reward window), so they live in an OrderedDict
    taken from its oldest end; not a plain dict, whose iteration start walks past every entry deleted from
    its front until the next resize (O(n) per call): with 200k pending decisions the 0.5 s sweep (which also
    copied the whole dict) took Select from 0.56x to 0.33x of the gRPC floor (issue 14). A decision put back
    after its feedback could not be stored is older than what arrived meanwhile, so it goes to a small heap
    by deadline instead; the sweep and eviction take the earliest deadline of the two. Add, take, sweep and
    evict are O(1) per decision (O(log r) for the r put back)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: OrderedDict[str, Decision] = OrderedDict()
        self._returned: dict[str, Decision] = {}
        self._heap: list[tuple[float, int, str]] = []  # (deadline, tie-break, event id); stale ids skipped
        self._pushes = 0
        self._default_retry: list[Decision] = []
        # Deferred decisions not activated (yet), in activation-deadline order (one per space, like the
        # window). Only a cache for idempotent Select retries and a fast Activate: Activate and Feedback
        # read the store when a decision is not here (another replica may hold or have activated it), and
        # a deferred decision needs no close, so one evicted from here beyond `limit` loses nothing.
        self._deferred: OrderedDict[str, Decision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open) + len(self._returned)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._open or event_id in self._returned or event_id in self._deferred

    def get(self, event_id: str) -> Decision | None:
        return self._open.get(event_id) or self._returned.get(event_id) or self._deferred.get(event_id)

    @property
    def deferred_count(self) -> int:
        return len(self._deferred)

    def add_deferred(self, d: Decision) -> None:
        while len(self._deferred) >= self.limit:
            self._deferred.popitem(last=False)
        self._deferred[d.event_id] = d

    def activated(self, d: Decision, *, newest: bool) -> list[Decision]:
        """`d` was activated: its feedback window is open now. `newest`: activated just now, so its deadline
        is the latest of all (else it goes to the heap, in its deadline's place). Returns evictions."""
        self._deferred.pop(d.event_id, None)
        if d.event_id in self._open or d.event_id in self._returned:
            return []
        if newest:
            return self.add(d)
        self.put_back(d)
        return []

    def pop_expired_deferred(self, now: float) -> list[Decision]:
        """The deferred decisions whose activation deadline passed: they are never learned nor defaulted."""
        out = []
        while self._deferred:
            d = self._deferred[next(iter(self._deferred))]
            if d.deadline > now:
                break
            out.append(self._deferred.popitem(last=False)[1])
        return out

    def _earliest(self) -> Decision | None:
        while self._heap and self._heap[0][2] not in self._returned:
            heapq.heappop(self._heap)  # taken meanwhile
        first = self._open[next(iter(self._open))] if self._open else None
        if self._heap:
            back = self._returned[self._heap[0][2]]
            if first is None or back.deadline <= first.deadline:
                return back
        return first

    def _pop(self, d: Decision) -> Decision:
        if self._returned.pop(d.event_id, None) is not None:
            heapq.heappop(self._heap)
        else:
            self._open.popitem(last=False)
        return d

    def add(self, d: Decision) -> list[Decision]:
        """Keep a decision (the newest); returns the oldest ones evicted to respect the bound."""
        evicted = []
        while len(self) >= self.limit:
            oldest = self._earliest()
            assert oldest is not None
            evicted.append(self._pop(oldest))
        self._open[d.event_id] = d
        return evicted

    def take(self, event_id: str) -> None:
        """Its feedback is being written: no longer pending (`put_back` if that fails)."""
        if self._open.pop(event_id, None) is None and self._returned.pop(event_id, None) is None:
            self._deferred.pop(event_id, None)

    def put_back(self, d: Decision) -> None:
        """Its feedback could not be stored: pending again, in its deadline's place."""
        self._returned[d.event_id] = d
        self._pushes += 1
        heapq.heappush(self._heap, (d.deadline, self._pushes, d.event_id))

    def pop_expired(self, now: float) -> list[Decision]:
        """The decisions whose window has closed, earliest deadline first."""
        out = []
        while (d := self._earliest()) is not None and d.deadline <= now:
            out.append(self._pop(d))
        return out

    def retry_default_later(self, d: Decision) -> None:
        self._default_retry.append(d)

    def take_default_retries(self) -> list[Decision]:
        out, self._default_retry = self._default_retry, []
        return out
