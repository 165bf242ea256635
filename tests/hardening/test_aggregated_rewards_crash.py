"""reward_aggregation through real server processes: several Feedbacks per decision are ACCEPTED (not
DUPLICATE), a retried one is DUPLICATE, nothing is learned before the window closes, and a kill -9 in the
middle of the window loses none of the acknowledged Feedbacks: the aggregate learned at the close is exactly
the mean of the recorded Feedbacks, which are every acknowledged one plus those re-sent after the restart (as
a device does with a report whose reply it never got) while the window was still open, each exactly once."""

from __future__ import annotations

import random
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import grpc

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, selection_pb2, selection_pb2_grpc
from tests.hardening.support import tracebacks
from tests.server.serverproc import ServerProcess, write_config

PHONE = {"ram_gb": 4.0}
WINDOW_S = 8.0
DECISIONS = 8
FEEDBACKS = 12  # per decision
ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
DUPLICATE = selection_pb2.FEEDBACK_STATUS_DUPLICATE


def feedback(stub: selection_pb2_grpc.SelectionServiceStub, eid: str, request_id: str, reward: float):
    return stub.Feedback(
        selection_pb2.FeedbackRequest(event_id=eid, reward=reward, request_id=request_id), timeout=10
    )


def learned(data: Path) -> dict[str, tuple[str, float]]:
    """event id -> (kind, reward) of every close in the log, read from the database itself."""
    with sqlite3.connect(f"file:{data / 'edgesel.sqlite3'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT event_id, kind, reward FROM events WHERE event_id IS NOT NULL").fetchall()
    conn.close()
    return {eid: (kind, reward) for eid, kind, reward in rows}


def recorded(data: Path) -> dict[str, dict[str, float]]:
    """event id -> {request id: reward} of the Feedbacks the store recorded."""
    with sqlite3.connect(f"file:{data / 'edgesel.sqlite3'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT event_id, key, reward FROM observations").fetchall()
    conn.close()
    out: dict[str, dict[str, float]] = {}
    for eid, key, reward in rows:
        out.setdefault(eid, {})[key] = reward
    return out


def n_updates(target: str) -> int:
    with grpc.insecure_channel(target) as ch:
        stats = catalog_pb2_grpc.CatalogServiceStub(ch).GetArmStats(
            catalog_pb2.GetArmStatsRequest(space="vision"), timeout=10
        )
    return sum(a.n_updates for a in stats.arms)


def test_kill9_mid_window_then_the_aggregate_is_exactly_every_recorded_feedback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, window=WINDOW_S, aggregation="mean", snapshot_every=5)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    rng = random.Random(12)
    plan: dict[str, list[tuple[str, float]]] = {}
    acked: dict[tuple[str, str], float] = {}
    lock = threading.Lock()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = selection_pb2_grpc.SelectionServiceStub(ch)
            select_time = time.time()
            for _ in range(DECISIONS):
                eid = stub.Select(selection_pb2.SelectRequest(space="vision", device_features=PHONE)).event_id
                plan[eid] = [(f"fb{i}", round(rng.random(), 6)) for i in range(FEEDBACKS)]
            # A second Feedback is ACCEPTED, not DUPLICATE; its retry is DUPLICATE with its own reward.
            eid0 = next(iter(plan))
            for request_id, reward in plan[eid0][:2]:
                assert feedback(stub, eid0, request_id, reward).status == ACCEPTED
                acked[(eid0, request_id)] = reward
            again = feedback(stub, eid0, *plan[eid0][1])
            assert again.status == DUPLICATE and again.reward == plan[eid0][1][1]
            assert n_updates(proc.target) == 0  # recorded, not learned: the window is open

        def send(items: list[tuple[str, str, float]]) -> None:
            with grpc.insecure_channel(proc.target) as ch:
                stub = selection_pb2_grpc.SelectionServiceStub(ch)
                for eid, request_id, reward in items:
                    try:
                        r = feedback(stub, eid, request_id, reward)
                    except grpc.RpcError:
                        return  # the server died
                    assert r.status == ACCEPTED, r
                    with lock:
                        acked[(eid, request_id)] = reward

        rest = [(e, q, r) for e, fbs in plan.items() for q, r in fbs if (e, q) not in acked]
        rng.shuffle(rest)
        workers = [threading.Thread(target=send, args=(rest[w::4],)) for w in range(4)]
        for w in workers:
            w.start()
        while True:
            with lock:
                if len(acked) >= len(rest) // 2:
                    break
            time.sleep(0.001)
        proc.kill()  # in the middle of the Feedbacks and of the window
        for w in workers:
            w.join()
        assert len(acked) < DECISIONS * FEEDBACKS
        proc = ServerProcess(cfg, data, port=port).start()
        with grpc.insecure_channel(proc.target) as ch:
            stub = selection_pb2_grpc.SelectionServiceStub(ch)
            for (eid, request_id), reward in acked.items():
                r = feedback(stub, eid, request_id, reward)
                assert r.status == DUPLICATE and r.reward == reward, (eid, request_id)
            for eid, fbs in plan.items():
                for request_id, reward in fbs:
                    if (eid, request_id) in acked:
                        continue
                    try:  # a lost reply or never sent: the device retries
                        assert feedback(stub, eid, request_id, reward).status in (ACCEPTED, DUPLICATE)
                    except grpc.RpcError as e:  # only if the restart took longer than the window
                        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e
                        assert time.time() > select_time + WINDOW_S
        deadline = time.monotonic() + WINDOW_S + 30
        while len(closed := learned(data)) < DECISIONS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(closed) == set(plan)
        observed = recorded(data)
        for eid, fbs in plan.items():
            sent = dict(fbs)
            assert {q: r for (e, q), r in acked.items() if e == eid}.items() <= observed[eid].items()
            assert observed[eid].items() <= sent.items()
            assert closed[eid] == ("feedback", statistics.fmean(observed[eid].values())), eid
        assert n_updates(proc.target) == DECISIONS
        assert not tracebacks(proc), tracebacks(proc)
    finally:
        proc.kill()
