"""What every store must do for aggregated rewards and deferred activation, checked on SQLite
(tests/server/test_reward_aggregation.py) and on Redis (tests/redis/test_aggregated_rewards_replicas.py):
the fences that make the window close one event in the log order."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from edgesel_server.space import new_event_id
from edgesel_server.store import base as ev
from edgesel_server.store.base import (
    Closure,
    Decision,
    DuplicateEvent,
    DuplicateObservation,
    LogEvent,
    Observation,
    StaleClose,
    Store,
)


def check_observation_fences(store: Store, space: str) -> None:
    """`store` is open and `space` is loaded (events_after ran), so appends are applied and resolve."""
    now = time.time()
    d = Decision(new_event_id(), space, "m", np.array([0.5, 1.0]), now, now + 60)
    store.submit_decision(d).result(timeout=10)
    first = Observation(d.event_id, "a", 0.5, {"latency_ms": 12.5}, False, "", now)
    assert store.submit_observation(d.space, first, d.deadline).result(timeout=10) == 1
    with pytest.raises(DuplicateObservation) as dup:  # a retry: the recorded one answers
        store.submit_observation(d.space, dataclasses.replace(first, reward=0.9), d.deadline).result(
            timeout=10
        )
    assert dup.value.observation == dataclasses.replace(first, n=1)
    second = Observation(d.event_id, "b", 0.75, {}, True, "timeout", now + 1)
    assert store.submit_observation(d.space, second, d.deadline).result(timeout=10) == 2
    assert store.observations(d.space, [d.event_id, "unknown"]) == {
        d.event_id: [dataclasses.replace(first, n=1), dataclasses.replace(second, n=2)],
        "unknown": [],
    }
    close = LogEvent(
        space, ev.FEEDBACK, event_id=d.event_id, model_id="m", x=d.x, reward=0.625, payload=b"{}"
    )
    with pytest.raises(StaleClose):  # computed from one observation, but the store has two: nothing appended
        store.submit_close(close, 1).result(timeout=10)
    assert store.closure(d.event_id) is None
    store.submit_close(close, 2).result(timeout=10)
    assert store.closure(d.event_id) == Closure(ev.FEEDBACK, 0.625)
    with pytest.raises(DuplicateEvent):  # after the close nothing is recorded any more
        store.submit_observation(d.space, Observation(d.event_id, "c", 0.1), d.deadline).result(timeout=10)
    with pytest.raises(DuplicateEvent):
        store.submit_close(close, 2).result(timeout=10)
    assert len(store.observations(d.space, [d.event_id])[d.event_id]) == 2


def check_activation(store: Store, space: str) -> None:
    now = time.time()
    d = Decision(
        new_event_id(), space, "deferred-model", np.array([0.5, 1.0]), now, now + 3600, deferred=True
    )
    store.submit_decision(d).result(timeout=10)
    before = store.selection_counts(space).get("deferred-model", 0)
    got = store.get_decision(d.event_id)
    assert got is not None and got.deferred and got.awaiting_activation
    act = store.submit_activation(d, now + 5, now + 65).result(timeout=10)
    assert (act.activated, act.deadline, act.fresh) == (now + 5, now + 65, True)
    again = store.submit_activation(d, now + 9, now + 69).result(timeout=10)  # the first one counts
    assert (again.activated, again.deadline, again.fresh) == (now + 5, now + 65, False)
    got = store.get_decision(d.event_id)
    assert got is not None and got.activated == now + 5 and got.deadline == now + 65
    assert not got.awaiting_activation
    assert store.selection_counts(space).get("deferred-model", 0) == before + 1  # counted once, at Activate
    opened = {o.event_id: o for o in store.open_decisions(space, now)}
    assert opened[d.event_id].activated == now + 5 and opened[d.event_id].deadline == now + 65
