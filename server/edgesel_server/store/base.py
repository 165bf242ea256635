"""The store interface: the durable log every space's learned state is derived from.

A store keeps three things per space:
- decisions: what was chosen for which context (so a Feedback can be joined to it, exactly once);
- an ordered event log: feedback and catalog/state changes, each with a sequence number;
- snapshots: the learned state as of some sequence number.

The state of a space is always `latest snapshot + replay of later events in order`. A store hands
committed events to `apply` in log order, exactly once per process, and only then resolves the caller's
future: an acknowledged Feedback has been made durable *and* is in the state.
"""

from __future__ import annotations

import abc
import json
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesel_server.errors import StoreUnavailable


@dataclass(frozen=True)
class Closure:
    """What closed a decision: the log event of kind FEEDBACK or DEFAULT_REWARD, with the reward applied."""

    kind: str
    reward: float


class DuplicateEvent(RuntimeError):
    """A feedback event for this event id is already in the log; `closure` says which, with its reward."""

    def __init__(self, event_id: str | None, closure: Closure) -> None:
        super().__init__(f"event {event_id} already has feedback ({closure.kind})")
        self.closure = closure


@dataclass(slots=True)
class Decision:
    event_id: str
    space: str
    model_id: str
    x: np.ndarray
    created: float
    deadline: float
    propensity: float = 1.0
    expected_qoe: float = 0.0
    bonus: float = 0.0
    policy_version: int = 0
    eligible: list[str] = field(default_factory=list)
    prefs: dict = field(default_factory=dict)
    owner: str = ""
    # Report group ("policy", "holdout", "excluded": holdout.py) and device class, fixed at Select time.
    group: str = "policy"
    device_class: str = "all"

    def prefs_json(self) -> str:
        return json.dumps(self.prefs, separators=(",", ":"), sort_keys=True)


# Event kinds in the log. Only `feedback` and `default_reward` carry an event id (unique per log).
FEEDBACK = "feedback"
DEFAULT_REWARD = "default_reward"
ADD_MODEL = "add_model"
UPDATE_MODEL = "update_model"
RETIRE_MODEL = "retire_model"
RESET = "reset"
IMPORT = "import"
# Many models added and updated as one change (ImportModels); payload {"add": [model], "update": [change]}.
IMPORT_MODELS = "import_models"
# The operator lifts a guardrail's withdrawal of (model_id, payload {"device_class"}) at this log position.
LIFT_GUARDRAIL = "lift_guardrail"
EVENT_KINDS = (
    FEEDBACK,
    DEFAULT_REWARD,
    ADD_MODEL,
    UPDATE_MODEL,
    RETIRE_MODEL,
    RESET,
    IMPORT,
    IMPORT_MODELS,
    LIFT_GUARDRAIL,
)


@dataclass
class LogEvent:
    space: str
    kind: str
    event_id: str | None = None
    model_id: str = ""
    x: np.ndarray | None = None
    reward: float = 0.0
    payload: bytes = b""
    created: float = 0.0
    seq: int = 0  # set by the store when committed


@dataclass
class Snapshot:
    space: str
    seq: int
    state: bytes
    catalog: list[dict]
    created: float
    # Log-derived state beside the bandit (the lift report and the guardrails: {"lift": ..., "guardrails":
    # ...}); {} in snapshots written before it existed, and then rebuilt from the events replayed after them.
    derived: dict = field(default_factory=dict)


ApplyFn = Callable[[LogEvent], None]
# Applies several committed events of one space, in log order, as ApplyFn would one by one (same result).
BatchApplyFn = Callable[[list[LogEvent]], None]

BATCH_MAX = 512


class WriteQueue:
    """What callers hand to a store's writer thread: (kind, object, future) items, taken in batches.

    Both backends group-commit: the writer takes whatever has queued up (at most `batch_max`) as one batch,
    so concurrent requests share one fsync (SQLite) or one round trip (Redis).
    """

    def __init__(self, batch_max: int = BATCH_MAX) -> None:
        self._q: queue.Queue = queue.Queue()
        self.batch_max = batch_max
        self.closed = False

    def submit(self, kind: str, obj: object) -> Future:
        fut: Future = Future()
        if self.closed:
            fut.set_exception(StoreUnavailable("the store is closed"))
        else:
            self._q.put((kind, obj, fut))
        return fut

    def close(self) -> None:
        """No new items; the writer finishes what is queued, then `next_batch` says stop."""
        self.closed = True
        self._q.put(None)

    def next_batch(self) -> tuple[list[tuple[str, Any, Future]], bool]:
        """Block for the next batch; the flag is True once the queue is closed (after this batch)."""
        item = self._q.get()
        if item is None:
            return [], True
        batch = [item]
        while len(batch) < self.batch_max:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False


class Store(abc.ABC):
    """Backends: SqliteStore (embedded default) and RedisStore (several replicas)."""

    # Called as (seconds, ok) after every attempt to make a batch of writes durable (metrics).
    commit_observer: Callable[[float, bool], None] | None = None

    @abc.abstractmethod
    def open(self, apply: ApplyFn, apply_batch: BatchApplyFn | None = None) -> None:
        """Connect; `apply` is called with every committed event, in log order (or, where the store reads
        many at once, `apply_batch` with a list of them, if given)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def latest_snapshot(self, space: str) -> Snapshot | None: ...

    @abc.abstractmethod
    def events_after(self, space: str, seq: int) -> Iterator[LogEvent]: ...

    def event_batches_after(self, space: str, seq: int) -> Iterator[list[LogEvent]]:
        """`events_after` in lists (for `apply_batch`), same events, same order."""
        batch: list[LogEvent] = []
        for e in self.events_after(space, seq):
            batch.append(e)
            if len(batch) >= BATCH_MAX:
                yield batch
                batch = []
        if batch:
            yield batch

    @abc.abstractmethod
    def save_snapshot(self, snap: Snapshot) -> None: ...

    _writes: WriteQueue

    def submit_decision(self, decision: Decision) -> Future[None]:
        """Make a decision durable; the future resolves when it is (or fails with StoreUnavailable)."""
        return self._writes.submit("decision", decision)

    def submit_event(self, event: LogEvent) -> Future[int]:
        """Append an event; resolves to its seq once durable and applied (DuplicateEvent,
        StoreUnavailable on failure)."""
        return self._writes.submit("event", event)

    @abc.abstractmethod
    def get_decision(self, event_id: str) -> Decision | None: ...

    @abc.abstractmethod
    def closure(self, event_id: str) -> Closure | None:
        """The log event that closed this decision (FEEDBACK or DEFAULT_REWARD) and its reward, if any."""

    @abc.abstractmethod
    def open_decisions(self, space: str, since: float) -> Iterator[Decision]:
        """Decisions whose window closes after `since` and that have no feedback yet, by deadline."""

    @abc.abstractmethod
    def selection_counts(self, space: str) -> dict[str, int]:
        """How many durable decisions chose each model (counted when the decision is written)."""

    # Several processes share this store: a decision one of them made may not have reached it yet.
    shared: bool = False

    @abc.abstractmethod
    def purge_decisions(self, before: float) -> int:
        """Forget decisions whose feedback window closed before `before`; returns how many."""

    def decision_log(self, space: str) -> Iterator[tuple[Decision, float | None]]:
        """Every stored decision of a space with its reward (None without feedback), for offline replay."""
        raise NotImplementedError
