"""Two replicas on a real Redis (AOF, appendfsync always): kill a replica, then Redis itself, under load.

No acknowledged Feedback is lost, none is acknowledged while Redis is down, no Feedback is NOT_FOUND for a
decision a replica answered during the outage (the decision reaches Redis once it is back), and the two
replicas end with identical ExportState and GetArmStats that equal the applied feedback exactly.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import grpc
import redis

from edgesel.v1 import selection_pb2
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from tests.hardening.crashload import (
    DEVICES,
    Books,
    CrashLoad,
    arm_stats,
    check_stats_equal_applied,
    export_state,
    reward_for,
    settle,
    wait_for,
)
from tests.redis.conftest import RedisServer, requires_redis
from tests.rpc_status import reason_of
from tests.server.serverproc import ServerProcess, write_config

pytestmark = requires_redis


def select_probes(target: str, n: int) -> list[tuple[str, str, float]]:
    with grpc.insecure_channel(target) as ch:
        stub = sel_grpc.SelectionServiceStub(ch)
        out = []
        for k in range(n):
            r = stub.Select(
                selection_pb2.SelectRequest(space="vision", device_features=DEVICES[k % len(DEVICES)]),
                timeout=30,
                wait_for_ready=True,  # a fresh channel may share a subchannel still backing off from the kill
            )
            out.append((r.event_id, r.model.model_id, reward_for(k)))
        return out


UNAVAILABLE_REASONS: set[str | None] = set()


def feedback_until_answered(
    target: str, event_id: str, reward: float, timeout: float = 120.0
) -> tuple[str, float]:
    """Feedback, retried while the answer is UNAVAILABLE (the store is not reachable yet)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = sel_grpc.SelectionServiceStub(ch)
        while True:
            try:
                fb = stub.Feedback(
                    selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=30
                )
                return selection_pb2.FeedbackStatus.Name(fb.status), fb.reward
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    return e.code().name, math.nan
                # Redis down (STORE_UNAVAILABLE), or up but the decision not written yet by the replica
                # that answered it (EVENT_NOT_YET_STORED); a transport error before the RPC has no reason.
                UNAVAILABLE_REASONS.add(reason_of(e))
                time.sleep(0.05)


def applied_seq(r: redis.Redis) -> int:
    return int(r.get("edgesel:{vision}:seq") or 0)  # type: ignore[arg-type]


def test_replica_and_redis_crashes_keep_every_statistic_exact(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cfg = write_config(tmp_path, store=redis_server.url, snapshot_every=40)
    procs = [ServerProcess(cfg, tmp_path / f"replica{i}").start() for i in range(2)]
    books = Books()
    try:
        targets = [p.target for p in procs]
        with CrashLoad(targets, books, workers=16, retry_for=120.0) as load:
            load.wait_acked(200)
            # A replica dies mid-load and comes back on the same port.
            port = procs[0].port
            procs[0].kill()
            load.wait_acked(load.acked_count() + 100)
            procs[0] = ServerProcess(cfg, tmp_path / "replica0", port=port).start()
            load.wait_acked(load.acked_count() + 200)
            # Redis dies mid-load: Selects are still answered from the replicas' state, Feedback waits.
            redis_server.kill()
            down_from = time.monotonic()
            probes = select_probes(targets[0], 20)
            down_until = time.monotonic()
            redis_server.start()  # same port, same AOF
            # Their feedback goes to the *other* replica: never NOT_FOUND, accepted once the decision is in.
            for event_id, model_id, reward in probes:
                status, got = feedback_until_answered(targets[1], event_id, reward)
                assert status == "FEEDBACK_STATUS_ACCEPTED", (event_id, status)
                with books.lock:
                    books.acked[event_id] = (model_id, got)
            load.wait_acked(load.acked_count() + 300)
        assert UNAVAILABLE_REASONS <= {"STORE_UNAVAILABLE", "EVENT_NOT_YET_STORED", None}, UNAVAILABLE_REASONS
        assert not books.wrong, books.wrong[:5]
        false_acks = [
            e for sent, answered, e in books.ack_times if down_from < sent and answered < down_until
        ]
        assert not false_acks, f"{len(false_acks)} feedback(s) acknowledged while Redis was down"
        assert books.codes["feedback:NOT_FOUND"] == 0, books.codes
        # Every feedback retried until accepted: none is left unsure.
        assert not books.unsure, (len(books.unsure), books.codes)
        applied = settle(targets, books)
        r = redis_server.client()
        want = str(applied_seq(r))
        wait_for(lambda: all(arm_stats(t).policy_version == want for t in targets), 120, "replicas converge")
        stats = [arm_stats(t) for t in targets]
        assert stats[0] == stats[1]
        check_stats_equal_applied(stats[0], applied)
        assert export_state(targets[0]) == export_state(targets[1])
    finally:
        for p in procs:
            p.kill()
