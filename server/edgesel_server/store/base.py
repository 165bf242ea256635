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
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesel_server.errors import LimitExceeded, StoreUnavailable


@dataclass(frozen=True)
class Closure:
    """What closed a decision: the log event of kind FEEDBACK or DEFAULT_REWARD, with the reward applied."""

    kind: str
    reward: float


@dataclass
class Observation:
    """One Feedback for a decision of a space that aggregates rewards (reward_aggregation != "first"):
    recorded, not learned; the decision's window close learns their aggregate (aggregation.py).

    `key` identifies the request (its request_id, else a digest of its content): the same key twice is a
    retry, answered DUPLICATE. `n` is its place among the decision's observations (1, 2, ...), given by
    the store in the order it made them durable."""

    event_id: str
    key: str
    reward: float
    measurements: dict[str, float] = field(default_factory=dict)
    failed: bool = False
    failure_reason: str = ""
    created: float = 0.0
    n: int = 0

    def record_json(self) -> str:
        return json.dumps(
            {"m": self.measurements, "f": self.failed, "fr": self.failure_reason, "c": self.created},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_record(cls, event_id: str, key: str, reward: float, n: int, record: str) -> Observation:
        d = json.loads(record)
        return cls(event_id, key, reward, d["m"], d["f"], d["fr"], d["c"], n)


# Observations recorded per decision at most (the store refuses more with LimitExceeded): bounds the store's
# rows and the close's work for one decision.
MAX_OBSERVATIONS = 1000


class TooManyObservations(LimitExceeded):
    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event {event_id} has {MAX_OBSERVATIONS} Feedbacks recorded, the most one decision takes",
            field="event_id",
        )


class DuplicateObservation(RuntimeError):
    """This request's observation is recorded already; `observation` is the one recorded."""

    def __init__(self, observation: Observation) -> None:
        super().__init__(f"event {observation.event_id}: observation {observation.key!r} is recorded already")
        self.observation = observation


class StaleClose(RuntimeError):
    """A window close was computed from `expected` observations but the store has `found` by now (one was
    recorded meanwhile): nothing was appended; compute it again."""

    def __init__(self, expected: int, found: int) -> None:
        super().__init__(f"the close was computed from {expected} observations; the store has {found}")
        self.expected, self.found = expected, found


@dataclass(frozen=True)
class Activation:
    """When a deferred decision was activated and when its feedback window closes; `fresh` is False when
    it had been activated already (a retried or concurrent Activate: the first one counts)."""

    activated: float
    deadline: float
    fresh: bool


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
    # Select(defer_activation): the decision counts, and its feedback window opens, only at Activate. Until
    # then `deadline` is the last moment it may be activated; `activated` is when it was (0: not yet), and
    # from then on `deadline` is the end of its feedback window.
    deferred: bool = False
    activated: float = 0.0

    @property
    def awaiting_activation(self) -> bool:
        return self.deferred and not self.activated

    def prefs_json(self) -> str:
        return json.dumps(self.prefs, separators=(",", ":"), sort_keys=True)


# Event kinds in the log. Only `feedback`, `default_reward` and `no_feedback` carry an event id (unique
# per log): the one event that closes a decision.
FEEDBACK = "feedback"
DEFAULT_REWARD = "default_reward"
# The window of a decision of an aggregating space closed without any Feedback and the space drops such
# decisions: nothing is learned, but the close is in the log so that no Feedback can be recorded after it.
NO_FEEDBACK = "no_feedback"
CLOSURE_KINDS = (FEEDBACK, DEFAULT_REWARD, NO_FEEDBACK)
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
    NO_FEEDBACK,
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

    def __init__(self, batch_max: int = BATCH_MAX, commit_delay_s: float = 0.0) -> None:
        # SimpleQueue: put is one C call (queue.Queue's Python Condition cost ~5 % of a Select's loop time).
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.batch_max = batch_max
        # Measured (benchmarks/select_breakdown.py): a commit costs the server ~400-550 us of CPU whatever
        # it holds (SQL, fsync, waking the writer and the event loop), and under load the event loop hands
        # the writer only ~1-2 writes per commit. So when writes are queueing up anyway, the writer waits
        # this long for more before committing. An idle writer (it had to wait for the first write) never
        # waits: a lone request is not delayed.
        self.commit_delay_s = commit_delay_s
        self.closed = False
        self._closing = threading.Event()  # ends a writer's wait at once

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
        self._closing.set()

    def next_batch(self) -> tuple[list[tuple[str, Any, Future]], bool]:
        """Block for the next batch; the flag is True once the queue is closed (after this batch)."""
        try:
            item = self._q.get_nowait()
            busy = True  # a write was already waiting: they arrive faster than they commit
        except queue.Empty:
            item = self._q.get()
            busy = False
        if item is None:
            return [], True
        batch = [item]
        if self._drain(batch):
            return batch, True
        if busy and self.commit_delay_s > 0 and len(batch) < self.batch_max:
            # One sleep for the whole delay, then take what came: waiting in `get` instead would wake this
            # thread (and make it take the GIL from the busy event loop) once per write that arrives.
            self._closing.wait(self.commit_delay_s)
            if self._drain(batch):
                return batch, True
        return batch, False

    def _drain(self, batch: list) -> bool:
        """Move what is queued into `batch` (up to batch_max); True if the queue's end was reached."""
        while len(batch) < self.batch_max:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False


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

    def submit_observation(self, space: str, observation: Observation, deadline: float) -> Future[int]:
        """Record one Feedback of an aggregating space (its decision's window closes at `deadline`);
        resolves to its place `n` once durable. DuplicateObservation for a key recorded already,
        DuplicateEvent once the decision is closed, TooManyObservations beyond MAX_OBSERVATIONS."""
        return self._writes.submit("observation", (observation, deadline, space))

    def submit_close(self, event: LogEvent, observations: int) -> Future[int]:
        """Append the event that closes an aggregating decision, computed from `observations` of them: as
        submit_event, but StaleClose (nothing appended) if the store has recorded another one meanwhile."""
        return self._writes.submit("close", (event, observations))

    def submit_activation(self, decision: Decision, activated: float, deadline: float) -> Future[Activation]:
        """Activate a deferred decision (its window is then [activated, deadline]) and count its selection,
        durably; an earlier activation wins (returned with fresh=False)."""
        return self._writes.submit("activate", (decision, activated, deadline))

    @abc.abstractmethod
    def observations(self, space: str, event_ids: list[str]) -> dict[str, list[Observation]]:
        """The recorded observations of these decisions of `space`, each list in the order `n`."""

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
