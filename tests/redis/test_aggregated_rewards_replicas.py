"""reward_aggregation on real Redis: the store's fences, and two replica processes that take the Feedbacks of
one decision alternately, one of them killed -9 mid-window: the close is one event in the log, so both learn
the same aggregate of exactly the recorded Feedbacks (every acknowledged one among them) and end identical."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import selection_pb2
from edgesel_server.store.redis import RedisStore
from tests.redis.conftest import RedisServer, requires_redis
from tests.redis.test_replicas import converge, replicas, sel
from tests.server.serverproc import ServerProcess
from tests.server.store_contract import check_activation, check_observation_fences

pytestmark = requires_redis
ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
DUPLICATE = selection_pb2.FEEDBACK_STATUS_DUPLICATE
WINDOW_S = 8.0
DECISIONS = 6
FEEDBACKS = 10


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    s = RedisStore(redis_server.url, None, on_fatal=lambda msg: None)
    s.open(lambda e: None)
    list(s.events_after("s", 0))  # tail the space, so appends resolve
    yield s
    s.close()


def test_the_redis_store_fences_observations_and_the_close(store: RedisStore) -> None:
    check_observation_fences(store, "s")
    check_activation(store, "s")


def closes(r) -> dict[str, tuple[str, float]]:
    """event id -> (kind, reward) of every close in the space's log stream."""
    out = {}
    for _id, f in r.xrange("edgesel:{vision}:log"):
        if f[b"e"]:
            out[f[b"e"].decode()] = (f[b"k"].decode(), float(f[b"r"]))
    return out


def recorded(r, eid: str) -> list[tuple[str, float]]:
    """(request id, reward) of a decision's recorded Feedbacks, in the order the store recorded them."""
    entries = [
        (k.decode(), v.decode().split(" ", 2)) for k, v in r.hgetall(f"edgesel:{{vision}}:obs:{eid}").items()
    ]
    return [(k, float(reward)) for k, (n, reward, _) in sorted(entries, key=lambda kv: int(kv[1][0]))]


AGGREGATE = {"mean": statistics.fmean, "last": lambda rs: rs[-1]}


@pytest.mark.parametrize("aggregation", ["mean", "last"])
def test_replicas_learn_the_same_aggregate_after_a_kill9_mid_window(
    tmp_path: Path, redis_server: RedisServer, aggregation: str
) -> None:
    r = redis_server.client()
    rng = random.Random(5)
    acked: dict[tuple[str, str], float] = {}
    lock = threading.Lock()
    with replicas(tmp_path, redis_server, 2, window=WINDOW_S, aggregation=aggregation) as (a, b):
        started = time.time()
        plan = {}
        for _ in range(DECISIONS):
            eid = sel(a.target).Select(
                selection_pb2.SelectRequest(space="vision", device_features={"ram_gb": 2.0})
            )
            plan[eid.event_id] = [(f"q{i}", round(rng.random(), 6)) for i in range(FEEDBACKS)]
        items = [(e, q, x) for e, fbs in plan.items() for q, x in fbs]
        rng.shuffle(items)

        def send(target: str, part: list) -> None:
            stub = sel(target)
            for eid, q, x in part:
                try:
                    res = stub.Feedback(
                        selection_pb2.FeedbackRequest(event_id=eid, reward=x, request_id=q), timeout=10
                    )
                except grpc.RpcError:
                    return  # replica a died
                assert res.status == ACCEPTED and res.reward == x
                with lock:
                    acked[(eid, q)] = x

        # Half of the Feedbacks to the replica that decided (a), half to the other (b).
        workers = [
            threading.Thread(target=send, args=(t, items[i::2])) for i, t in enumerate((a.target, b.target))
        ]
        for w in workers:
            w.start()
        while len(acked) < len(items) // 3:
            time.sleep(0.001)
        port = a.port
        a.kill()  # holds every decision in its pending set
        for w in workers:
            w.join()
        a = ServerProcess(a.config, a.data_dir, port=port).start()
        try:
            check_closes(r, a, b, plan, items, acked, started, aggregation)
        finally:
            a.kill()


def check_closes(r, a: ServerProcess, b: ServerProcess, plan, items, acked, started, aggregation) -> None:
    """Re-send what a device would, wait for the closes, compare them with the recorded Feedbacks."""
    stub = sel(b.target)
    for (eid, q), x in list(acked.items()):
        res = stub.Feedback(selection_pb2.FeedbackRequest(event_id=eid, reward=x, request_id=q), timeout=10)
        assert res.status == DUPLICATE and res.reward == x
    for eid, q, x in items:
        if (eid, q) not in acked:
            try:
                res = sel(a.target).Feedback(
                    selection_pb2.FeedbackRequest(event_id=eid, reward=x, request_id=q), timeout=10
                )
                assert res.status in (ACCEPTED, DUPLICATE)
            except grpc.RpcError as e:  # only when the restart took longer than the window
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and time.time() > started + WINDOW_S
    deadline = time.monotonic() + WINDOW_S + 30
    while len(closed := closes(r)) < DECISIONS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(closed) == set(plan)
    for eid, fbs in plan.items():
        got = recorded(r, eid)
        assert {q: x for (e, q), x in acked.items() if e == eid}.items() <= dict(got).items()
        assert dict(got).items() <= dict(fbs).items()
        assert closed[eid] == ("feedback", AGGREGATE[aggregation]([x for _, x in got])), eid
    (state_a, version_a, total_a), (state_b, version_b, total_b) = converge([a.target, b.target], r)
    assert state_a == state_b and version_a == version_b and total_a == total_b == DECISIONS


def test_activate_on_one_replica_feedback_on_the_other_and_a_kill9(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Select(defer_activation) on a, Activate on b, Feedback on a: a's copy of the decision is stale
    (awaiting activation) and it asks Redis. b, which holds the activated decision, is killed -9; both
    replicas close the window from Redis's observations, once, and end identical. The decision never
    activated gets neither a default reward nor a selection count."""
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 2, window=4.0, aggregation="mean", on_missing="default") as (a, b):
        req = selection_pb2.SelectRequest(
            space="vision", device_features={"ram_gb": 2.0}, defer_activation=True
        )
        used, unused = sel(a.target).Select(req).event_id, sel(a.target).Select(req).event_id
        with pytest.raises(grpc.RpcError) as info:
            sel(b.target).Feedback(selection_pb2.FeedbackRequest(event_id=used, reward=0.5, request_id="x"))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        act = sel(b.target).Activate(selection_pb2.ActivateRequest(event_id=used), timeout=10)
        assert not act.already_activated
        assert (
            sel(a.target).Activate(selection_pb2.ActivateRequest(event_id=used), timeout=10).already_activated
        )
        assert (
            sum(int(v) for v in r.hgetall("edgesel:{vision}:sel").values()) == 1
        )  # counted once, at Activate
        for i, (replica, x) in enumerate(((a, 0.2), (b, 0.6), (a, 0.7))):
            res = sel(replica.target).Feedback(
                selection_pb2.FeedbackRequest(event_id=used, reward=x, request_id=f"q{i}"), timeout=10
            )
            assert res.status == ACCEPTED
        port = b.port
        b.kill()
        b2 = ServerProcess(b.config, b.data_dir, port=port).start()
        try:
            deadline = time.monotonic() + 30
            while used not in closes(r) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert closes(r) == {used: ("feedback", statistics.fmean([0.2, 0.6, 0.7]))}
            (state_a, version_a, _), (state_b, version_b, _) = converge([a.target, b2.target], r)
            assert state_a == state_b and version_a == version_b
            assert unused not in closes(r)
        finally:
            b2.kill()
