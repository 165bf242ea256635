"""RedisStore in-process: the exactly-once claims, the seq <-> stream id mapping, trimming, gap detection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edgesel_server.store import base as ev
from edgesel_server.store.base import Decision, DuplicateEvent, LogEvent, Snapshot
from edgesel_server.store.redis import RedisStore
from tests.redis.conftest import RedisServer, requires_redis

pytestmark = requires_redis


class Replica:
    def __init__(self, url: str, space: str = "s") -> None:
        self.applied: list[LogEvent] = []
        self.fatal: list[str] = []
        self.store = RedisStore(url, None, on_fatal=self.fatal.append)
        self.store.open(self.applied.append)
        self.space = space

    def load(self) -> list[LogEvent]:
        snap = self.store.latest_snapshot(self.space)
        return list(self.store.events_after(self.space, snap.seq if snap else 0))


@pytest.fixture
def two(redis_server: RedisServer) -> Iterator[tuple[Replica, Replica]]:
    a, b = Replica(redis_server.url), Replica(redis_server.url)
    a.load()
    b.load()
    yield a, b
    a.store.close()
    b.store.close()


def reward(kind: str, event_id: str, r: float = 0.5) -> LogEvent:
    return LogEvent("s", kind, event_id=event_id, model_id="m", x=np.array([0.1, 0.2]), reward=r, created=1.0)


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_feedback_and_default_reward_claim_the_event_id_once(two: tuple[Replica, Replica]) -> None:
    a, b = two
    results: list[object] = []

    def send(replica: Replica, kind: str) -> None:
        try:
            results.append(replica.store.submit_event(reward(kind, "e1")).result(timeout=5))
        except DuplicateEvent as e:
            results.append(e)

    pairs = ((a, ev.FEEDBACK), (b, ev.DEFAULT_REWARD))
    threads = [threading.Thread(target=send, args=args) for args in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["DuplicateEvent", "int"]
    wait_for(lambda: len(a.applied) == len(b.applied) == 1)
    assert a.applied[0].seq == b.applied[0].seq == 1
    closures = {a.store.closure("e1"), b.store.closure("e1")}
    assert closures == {ev.Closure(a.applied[0].kind, 0.5)}
    # The event round-trips exactly (byte-identical state needs identical floats).
    e = b.applied[0]
    assert (e.model_id, e.reward, e.created, e.x.tobytes()) == ("m", 0.5, 1.0, np.array([0.1, 0.2]).tobytes())


def test_add_model_twice_is_appended_once(two: tuple[Replica, Replica]) -> None:
    a, b = two
    add = LogEvent("s", ev.ADD_MODEL, model_id="m1", payload=b"{}", created=2.0)
    seqs = [r.store.submit_event(add).result(timeout=5) for r in (a, b)]
    assert seqs == [1, 1]
    other = LogEvent("s", ev.RETIRE_MODEL, model_id="m1", created=3.0)
    assert b.store.submit_event(other).result(timeout=5) == 2
    wait_for(lambda: [e.seq for e in a.applied] == [1, 2])


def test_decisions_are_shared_with_a_ttl(two: tuple[Replica, Replica], redis_server: RedisServer) -> None:
    a, b = two
    now = time.time()
    d = Decision("d1", "s", "m", np.array([1.0, 2.5]), now, now + 30, prefs={"latency_budget_ms": 50.0})
    a.store.submit_decision(d).result(timeout=5)
    got = b.store.get_decision("d1")
    assert got is not None and got.x.tobytes() == d.x.tobytes() and got.prefs == d.prefs
    assert [x.event_id for x in b.store.open_decisions("s", now)] == ["d1"]
    ttl = redis_server.client().pttl("edgesel:{s}:dec:d1")
    assert 30_000 < ttl <= (30 + a.store.decision_margin_s) * 1000
    b.store.submit_event(reward(ev.FEEDBACK, "d1", 0.75)).result(timeout=5)
    assert list(a.store.open_decisions("s", now)) == []
    assert [(x.event_id, r) for x, r in a.store.decision_log("s")] == [("d1", 0.75)]


def test_trim_keeps_what_a_loading_replica_needs(
    two: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, b = two
    r = redis_server.client()
    for i in range(5):
        a.store.submit_event(reward(ev.FEEDBACK, f"x{i}")).result(timeout=5)
    late = Replica(redis_server.url)
    assert late.store.latest_snapshot("s") is None  # registers position 0: the log must stay whole
    for i in range(5, 10):
        a.store.submit_event(reward(ev.FEEDBACK, f"x{i}")).result(timeout=5)
    wait_for(lambda: len(b.applied) == 10)
    a.store.save_snapshot(Snapshot("s", 10, b"state", [], 1.0))
    assert r.xlen("edgesel:{s}:log") == 10
    assert [e.seq for e in late.store.events_after("s", 0)] == list(range(1, 11))
    # Once every replica is past it, a snapshot lets the log go (approximate trimming: whole nodes).
    for i in range(10, 300):
        a.store.submit_event(reward(ev.FEEDBACK, f"x{i}")).result(timeout=5)
    wait_for(lambda: late.store.applied_seq("s") == b.store.applied_seq("s") == 300)
    for rep in (a, b, late):
        rep.store._heartbeat()
    b.store.save_snapshot(Snapshot("s", 300, b"state", [], 2.0))
    assert r.xlen("edgesel:{s}:log") < 300
    assert late.store.latest_snapshot("s").seq == 300  # type: ignore[union-attr]
    assert list(late.store.events_after("s", 300)) == []
    late.store.close()


def test_a_gap_in_the_log_is_fatal_not_silent(
    two: tuple[Replica, Replica], redis_server: RedisServer
) -> None:
    a, _ = two
    r = redis_server.client()
    r.set("edgesel:{s}:seq", 5)
    fields = {"k": "reset", "e": "", "m": "", "x": b"\x00", "r": "0.0", "p": b"", "c": "1.0"}
    r.xadd("edgesel:{s}:log", fields, id="0-5")  # seqs 1-4 never reached this replica
    wait_for(lambda: bool(a.fatal))
    time.sleep(0.6)
    assert "jumps from seq 0 to 5" in a.fatal[0]
    assert a.applied == []
    assert a.fatal == [a.fatal[0]], "reported once; the tailer stopped"
    with pytest.raises(ev.StoreUnavailable, match="jumps"):
        a.store.submit_event(reward(ev.FEEDBACK, "after")).result(timeout=5)
    late = Replica(redis_server.url)
    try:
        with pytest.raises(RuntimeError, match="trimmed"):
            late.load()
    finally:
        late.store.close()
