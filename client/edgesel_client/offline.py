"""What keeps an app working while the server is unreachable.

- SelectionCache remembers the last good selection per (space, eligible set), so ``select`` can still answer
  (``from_cache=True``, ``event_id=""``), and falls back to a configured default model.
- FeedbackQueue keeps feedback that failed with UNAVAILABLE until the next successful call; it is bounded,
  drops the oldest entry when full and counts what it dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import FrozenSet, Tuple

from edgesel.v1 import selection_pb2
from edgesel_client.selection import BaseSelection

# typing's aliases, not tuple[...]: this line runs at import, and the SDK supports CPython 3.8.
CacheKey = Tuple[str, FrozenSet[str]]


def cache_key(space: str, eligible: Sequence[str] | None) -> CacheKey:
    return (space, frozenset(eligible or ()))


class SelectionCache:
    """Last good selection per (space, eligible set), least recently used evicted beyond ``max_entries``."""

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[CacheKey, BaseSelection] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, space: str, eligible: Sequence[str] | None, selection: BaseSelection) -> None:
        key = cache_key(space, eligible)
        with self._lock:
            self._entries[key] = selection
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def fallback(
        self, space: str, eligible: Sequence[str] | None, default_model_id: str | None
    ) -> BaseSelection | None:
        """The selection to use offline, or None if there is nothing sensible to offer.

        Order: the last selection for exactly this (space, eligible set); else the most recent selection in
        the space whose model is eligible; else the default model (if eligible).
        """
        allowed = frozenset(eligible or ())
        with self._lock:
            chosen = self._entries.get(cache_key(space, eligible))
            if chosen is None:
                for (cached_space, _), selection in reversed(self._entries.items()):
                    if cached_space == space and (not allowed or selection.model_id in allowed):
                        chosen = selection
                        break
            if (
                chosen is None
                and default_model_id is not None
                and (not allowed or default_model_id in allowed)
            ):
                chosen = self._default_selection(space, default_model_id)
        if chosen is None:
            return None
        return dataclasses.replace(
            _unbound(chosen),
            event_id="",
            exploratory=False,
            feedback_deadline=None,
            activation_deadline=None,
            ranking=(),
            request_user_rating=False,
            from_cache=True,
        )

    def _default_selection(self, space: str, model_id: str) -> BaseSelection:
        # Reuse what the server once told us about the default model (artifact, features), if anything.
        for (cached_space, _), selection in reversed(self._entries.items()):
            if cached_space == space and selection.model_id == model_id:
                return selection
        return BaseSelection(
            event_id="",
            model_id=model_id,
            version="",
            artifact_uri="",
            features={},
            metadata={},
            expected_qoe=0.0,
            exploration_bonus=0.0,
            score=0.0,
            exploratory=False,
            feedback_deadline=None,
            policy_version="",
        )


def _unbound(selection: BaseSelection) -> BaseSelection:
    """A plain BaseSelection with the same fields (drops the client a Selection is bound to)."""
    return BaseSelection(
        **{field.name: getattr(selection, field.name) for field in dataclasses.fields(BaseSelection)}
    )


@dataclass(frozen=True)
class PendingFeedback:
    request: selection_pb2.FeedbackRequest
    deadline: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        if self.deadline is None:
            return False
        return (now or datetime.now(timezone.utc)) > self.deadline


class FeedbackQueue:
    """Bounded FIFO of feedback waiting for the server; the oldest entry goes when it is full."""

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.max_size = max_size
        self._items: deque[PendingFeedback] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        """Entries lost because the queue was full."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: PendingFeedback) -> None:
        with self._lock:
            self._items.append(item)
            self._trim()

    def take_all(self) -> list[PendingFeedback]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def put_back(self, items: Iterable[PendingFeedback]) -> None:
        """Return unsent entries to the front (they are older than anything queued meanwhile)."""
        with self._lock:
            self._items.extendleft(reversed(list(items)))
            self._trim()

    def _trim(self) -> None:
        while len(self._items) > self.max_size:
            self._items.popleft()
            self.dropped += 1


@dataclass(frozen=True)
class ClientStats:
    """Counters of the offline machinery, as a snapshot."""

    selections_from_cache: int
    feedback_queued: int
    """Feedback put in the queue because the server was unreachable."""
    feedback_flushed: int
    """Queued feedback later delivered to the server."""
    feedback_pending: int
    """Feedback currently waiting in the queue."""
    feedback_dropped_queue_full: int
    feedback_dropped_from_cache: int
    """Feedback for selections that came from the offline cache (no event id), discarded."""
    feedback_dropped_expired: int
    """Queued feedback whose deadline passed before the server came back, discarded."""
    feedback_rejected: int
    """Queued feedback the server refused when it was finally delivered (e.g. unknown event id)."""


@dataclass
class OfflineCounters:
    selections_from_cache: int = 0
    feedback_queued: int = 0
    feedback_flushed: int = 0
    feedback_dropped_from_cache: int = 0
    feedback_dropped_expired: int = 0
    feedback_rejected: int = 0

    def snapshot(self, queue: FeedbackQueue) -> ClientStats:
        return ClientStats(
            selections_from_cache=self.selections_from_cache,
            feedback_queued=self.feedback_queued,
            feedback_flushed=self.feedback_flushed,
            feedback_pending=len(queue),
            feedback_dropped_queue_full=queue.dropped,
            feedback_dropped_from_cache=self.feedback_dropped_from_cache,
            feedback_dropped_expired=self.feedback_dropped_expired,
            feedback_rejected=self.feedback_rejected,
        )
