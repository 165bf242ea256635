"""A space's decisions that wait for feedback, and its counters: owned by the event loop, never locked.

The learned state (catalog, bandit, per-arm counters, applied seq) belongs to `SpaceRuntime` and is written
only by the store's thread that applies committed log events; what lives here is written only by the
asyncio loop (Select, Feedback, the background sweep), so neither needs the other's lock.
"""

from __future__ import annotations

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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PendingDecisions:
    """Decisions whose feedback window is open, oldest first, at most `limit`; and the expired ones whose
    default reward could not be stored yet (tried again on the next sweep)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, Decision] = {}
        self._default_retry: list[Decision] = []

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._open

    def get(self, event_id: str) -> Decision | None:
        return self._open.get(event_id)

    def add(self, d: Decision) -> list[Decision]:
        """Keep a decision; returns the oldest ones evicted to respect the bound."""
        evicted = []
        while len(self._open) >= self.limit:
            evicted.append(self._open.pop(next(iter(self._open))))
        self._open[d.event_id] = d
        return evicted

    def take(self, event_id: str) -> None:
        """Its feedback is being written: no longer pending (`put_back` if that fails)."""
        self._open.pop(event_id, None)

    def put_back(self, d: Decision) -> None:
        self._open[d.event_id] = d

    def pop_expired(self, now: float) -> list[Decision]:
        # A space has one reward window, so insertion order is deadline order: stop at the first live one.
        out = []
        for event_id, d in list(self._open.items()):
            if d.deadline > now:
                break
            out.append(self._open.pop(event_id))
        return out

    def retry_default_later(self, d: Decision) -> None:
        self._default_retry.append(d)

    def take_default_retries(self) -> list[Decision]:
        out, self._default_retry = self._default_retry, []
        return out
