"""Several edgesel replicas on one real Redis: convergence, exactly-once, replica and Redis crashes."""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.core import Bandit
from tests.redis.conftest import RedisServer, requires_redis
from tests.server.serverproc import ServerProcess, write_config

pytestmark = requires_redis
ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
DUPLICATE = selection_pb2.FEEDBACK_STATUS_DUPLICATE
DEVICES = [{"ram_gb": 1.0 + i, "has_npu": float(i % 2), "battery_percent": 10.0 * i} for i in range(8)]


@contextlib.contextmanager
def replicas(tmp_path: Path, redis_server: RedisServer, n: int, **cfg_kw) -> Iterator[list[ServerProcess]]:
    cfg = write_config(tmp_path, store=redis_server.url, **cfg_kw)
    procs: list[ServerProcess] = []
    try:
        for i in range(n):
            procs.append(ServerProcess(cfg, tmp_path / f"replica{i}").start())
        yield procs
    finally:
        for p in procs:
            p.kill()


def start_replica(tmp_path: Path, name: str, port: int = 0) -> ServerProcess:
    return ServerProcess(tmp_path / "edgesel.toml", tmp_path / name, port=port).start()


def sel(target: str, options: Sequence[tuple[str, Any]] = ()) -> sel_grpc.SelectionServiceStub:
    return sel_grpc.SelectionServiceStub(grpc.insecure_channel(target, options=options))


def cat(target: str) -> cat_grpc.CatalogServiceStub:
    return cat_grpc.CatalogServiceStub(grpc.insecure_channel(target))


def export(target: str, space: str = "vision") -> tuple[bytes, str, int]:
    c = cat(target)
    r = c.ExportState(catalog_pb2.ExportStateRequest(space=space), timeout=10)
    total = c.GetArmStats(catalog_pb2.GetArmStatsRequest(space=space), timeout=10).total_updates
    return r.state, r.policy_version, total


def converge(targets: list[str], r: redis.Redis, space: str = "vision", timeout: float = 30.0) -> list:
    """Wait until every replica has applied the whole log; returns their exports."""
    want = str(int(r.get(f"edgesel:{{{space}}}:seq") or 0))  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    while True:
        exports = [export(t, space) for t in targets]
        if all(e[1] == want for e in exports):
            return exports
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas did not converge to seq {want}: {[e[1] for e in exports]}")
        time.sleep(0.05)


class Load:
    """Workers doing Select on one replica and Feedback on the next; records what was acknowledged."""

    def __init__(
        self, targets: list[str], workers: int, channel_options: Sequence[tuple[str, Any]] = ()
    ) -> None:
        self.targets = targets
        self.channel_options = channel_options
        self.stop_event = threading.Event()
        self.acked: list[tuple[str, float]] = []
        self.codes: collections.Counter[str] = collections.Counter()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def wait_acked(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {n} feedbacks acked: {self.codes}"
            time.sleep(0.05)

    def _run(self, w: int) -> None:
        stubs = [sel(t, self.channel_options) for t in self.targets]
        n = len(stubs)
        i = 0
        while not self.stop_event.is_set():
            i += 1
            try:
                r = stubs[(w + i) % n].Select(
                    selection_pb2.SelectRequest(space="vision", device_features=DEVICES[(w + i) % 8]),
                    timeout=5,
                )
            except grpc.RpcError as e:
                self.codes[f"select:{e.code().name}"] += 1
                time.sleep(0.02)
                continue
            reward = ((w * 7 + i) % 11) / 10
            try:
                fb = stubs[(w + i + 1) % n].Feedback(
                    selection_pb2.FeedbackRequest(event_id=r.event_id, reward=reward), timeout=5
                )
            except grpc.RpcError as e:
                self.codes[f"feedback:{e.code().name}"] += 1
                time.sleep(0.02)
                continue
            self.codes[f"feedback:{selection_pb2.FeedbackStatus.Name(fb.status)}"] += 1
            if fb.status == ACCEPTED:
                self.acked.append((r.event_id, reward))


def feedback_claims(r: redis.Redis, kind: str = "feedback") -> set[str]:
    out = set()
    for key in r.scan_iter(match="edgesel:{*}:fb:*", count=1000):
        value = r.get(key)
        if value is not None and value.split()[0].decode() == kind:  # type: ignore[union-attr]
            out.add(key.decode().rsplit(":fb:", 1)[1])
    return out


def test_spread_load_converges_to_identical_state(tmp_path: Path, redis_server: RedisServer) -> None:
    """Select on one replica, Feedback on another; every replica and a fresh one end bit-identical."""
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 3, snapshot_every=30) as procs:
        targets = [p.target for p in procs]
        with Load(targets, workers=6) as load:
            load.wait_acked(600)
        assert set(load.codes) == {"feedback:FEEDBACK_STATUS_ACCEPTED"}, load.codes
        exports = converge(targets, r)
        assert len({e[0] for e in exports}) == 1, "replicas hold different learned states"
        assert exports[0][2] == len(load.acked)
        # Snapshots were written and the log was trimmed below them.
        assert r.zcard("edgesel:{vision}:snaps") >= 1
        assert r.xlen("edgesel:{vision}:log") < int(r.get("edgesel:{vision}:seq"))  # type: ignore[arg-type]
        # A fresh replica (latest snapshot + the rest of the stream) has the very same state.
        fresh = start_replica(tmp_path, "fresh")
        try:
            assert converge([fresh.target], r) == exports[:1]
        finally:
            fresh.kill()


def test_replicas_with_forgetting_stay_bit_identical(tmp_path: Path, redis_server: RedisServer) -> None:
    """With `half_life`, the discount depends on the log position only: replicas applying the same Redis
    log, and a fresh one (snapshot + stream), hold the same bytes."""
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 2, snapshot_every=25, half_life=15) as procs:
        targets = [p.target for p in procs]
        with Load(targets, workers=4) as load:
            load.wait_acked(300)
        exports = converge(targets, r)
        assert len({e[0] for e in exports}) == 1, "replicas hold different learned states"
        assert Bandit.from_bytes(exports[0][0]).half_life == 15
        fresh = start_replica(tmp_path, "fresh")
        try:
            assert converge([fresh.target], r) == exports[:1]
        finally:
            fresh.kill()


def test_duplicate_feedback_to_several_replicas_is_learned_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 3) as procs:
        stubs = [sel(p.target) for p in procs]
        n = 30
        with ThreadPoolExecutor(3) as pool:
            for i in range(n):
                d = stubs[i % 3].Select(
                    selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 8]), timeout=5
                )
                barrier = threading.Barrier(3)

                def send(
                    stub: sel_grpc.SelectionServiceStub,
                    event_id: str = d.event_id,
                    barrier: threading.Barrier = barrier,
                ) -> int:
                    barrier.wait()
                    req = selection_pb2.FeedbackRequest(event_id=event_id, reward=0.5)
                    return stub.Feedback(req, timeout=5).status

                statuses = sorted(pool.map(send, stubs))
                assert statuses == [ACCEPTED, DUPLICATE, DUPLICATE], (i, statuses)
        exports = converge([p.target for p in procs], r)
        assert [e[2] for e in exports] == [n] * 3
        assert len({e[0] for e in exports}) == 1
        assert len(feedback_claims(r)) == n


def test_default_reward_is_applied_once_by_several_replicas(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    # Short on purpose: B's restart may outlast it (A is stopped meanwhile, below), so B reloads some
    # decisions as overdue; the count below covers both cases.
    window = 3.0
    with replicas(tmp_path, redis_server, 2, window=window, on_missing="default") as procs:
        a, b = procs
        s = sel(a.target)
        n = 20
        for i in range(n):
            s.Select(selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 8]), timeout=5)
        # Restarted, B reloads every open decision from Redis, A's included: both will expire them. A is
        # stopped (SIGSTOP) meanwhile so it cannot claim any before B has loaded them, however slowly B
        # restarts on a busy machine; B counts each as pending or, if its window closed already, overdue.
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        try:
            b.kill()
            procs[1] = b = start_replica(tmp_path, "replica1", port=b.port)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        ready = [json.loads(line) for line in b.stderr_lines if '"space ready"' in line]
        assert [(x["pending"] + x["overdue"]) for x in ready if x.get("space") == "vision"] == [n]
        deadline = time.monotonic() + window + 15
        while len(feedback_claims(r, "default_reward")) < n or export(a.target)[2] < n:
            assert time.monotonic() < deadline, "default rewards were not applied"
            time.sleep(0.1)
        time.sleep(1.5)  # both replicas have swept past every deadline by now
        exports = converge([a.target, b.target], r)
        assert [e[2] for e in exports] == [n, n]
        assert exports[0][0] == exports[1][0]
        assert len(feedback_claims(r, "default_reward")) == n


def test_replica_killed_mid_load_catches_up(tmp_path: Path, redis_server: RedisServer) -> None:
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 3, snapshot_every=30) as procs:
        targets = [p.target for p in procs]
        with Load(targets, workers=6) as load:
            load.wait_acked(150)
            victim = procs[2]
            victim.kill()  # SIGKILL mid-stream
            n = len(load.acked)
            load.wait_acked(n + 150)  # the others keep learning meanwhile
            procs[2] = start_replica(tmp_path, "replica2", port=victim.port)
            n = len(load.acked)
            load.wait_acked(n + 150)
        exports = converge(targets, r)
        assert len({e[0] for e in exports}) == 1, "the restarted replica diverged"
        total = exports[0][2]
        assert total >= len(load.acked)
        assert total == len(feedback_claims(r)), "the state and the log disagree"
        stubs = [sel(t) for t in targets]
        for i, (event_id, reward) in enumerate(load.acked):
            fb = stubs[i % 3].Feedback(
                selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=5
            )
            assert fb.status == DUPLICATE, event_id
        assert [e[2] for e in converge(targets, r)] == [total] * 3


def test_redis_restart_loses_no_acknowledged_feedback(tmp_path: Path, redis_server: RedisServer) -> None:
    with replicas(tmp_path, redis_server, 2, snapshot_every=40) as procs:
        targets = [p.target for p in procs]
        a, b = (sel(t) for t in targets)
        with Load(targets, workers=4) as load:
            load.wait_acked(200)
            redis_server.kill()
            time.sleep(0.3)
            # Outage: Select answers from the local state, Feedback is UNAVAILABLE (never a false ack).
            probe = a.Select(
                selection_pb2.SelectRequest(space="vision", device_features=DEVICES[0]), timeout=5
            )
            for stub in (a, b):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Feedback(
                        selection_pb2.FeedbackRequest(event_id=probe.event_id, reward=1.0), timeout=5
                    )
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            acked_before = len(load.acked)
            time.sleep(1.0)
            assert len(load.acked) == acked_before, "feedback was acknowledged while Redis was down"
            assert load.codes["select:UNAVAILABLE"] == 0
            redis_server.start()  # same port, same AOF directory
            load.wait_acked(acked_before + 200)
        # The decision made during the outage lives in A's memory: its feedback now goes through.
        fb = a.Feedback(selection_pb2.FeedbackRequest(event_id=probe.event_id, reward=1.0), timeout=5)
        assert fb.status == ACCEPTED
        r = redis_server.client()
        exports = converge(targets, r)
        assert exports[0][0] == exports[1][0]
        claims = feedback_claims(r)
        missing = [e for e, _ in load.acked if e not in claims]
        assert not missing, f"{len(missing)} acknowledged feedback(s) lost with the Redis restart"
        assert exports[0][2] == len(claims)
        for i, (event_id, reward) in enumerate(load.acked):
            stub = (a, b)[i % 2]
            fb = stub.Feedback(selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=5)
            assert fb.status == DUPLICATE, event_id
        assert [e[2] for e in converge(targets, r)] == [len(claims)] * 2


def test_catalog_changes_reach_every_replica(tmp_path: Path, redis_server: RedisServer) -> None:
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 3) as procs:
        a, b, c = (p.target for p in procs)
        model = types_pb2.Model(
            model_id="huge",
            artifact_uri="file:///models/huge.pt",
            features={"top1": 90.0, "file_size_mb": 500.0, "quantized": 0.0},
        )
        cat(a).AddModel(catalog_pb2.AddModelRequest(space="vision", model=model), timeout=5)
        for t in (b, c):
            deadline = time.monotonic() + 5
            while "huge" not in {
                m.model_id for m in cat(t).ListModels(catalog_pb2.ListModelsRequest(space="vision")).models
            }:
                assert time.monotonic() < deadline, f"AddModel on A did not reach {t}"
                time.sleep(0.02)
        d = sel(c).Select(
            selection_pb2.SelectRequest(
                space="vision", device_features=DEVICES[3], eligible_model_ids=["huge"]
            ),
            timeout=5,
        )
        assert d.model.model_id == "huge"
        fb = sel(b).Feedback(selection_pb2.FeedbackRequest(event_id=d.event_id, reward=0.9), timeout=5)
        assert fb.status == ACCEPTED
        cat(b).RetireModel(catalog_pb2.RetireModelRequest(space="vision", model_id="huge"), timeout=5)
        exports = converge([a, b, c], r)
        assert len({e[0] for e in exports}) == 1
        for t in (a, c):
            models = (
                cat(t).ListModels(catalog_pb2.ListModelsRequest(space="vision", include_retired=True)).models
            )
            assert [m.retired for m in models if m.model_id == "huge"] == [True]
        # Adding the same id again is refused everywhere.
        with pytest.raises(grpc.RpcError) as err:
            cat(c).AddModel(catalog_pb2.AddModelRequest(space="vision", model=model), timeout=5)
        assert err.value.code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT)


@requires_redis
def test_replicas_started_together_on_an_empty_redis_add_each_model_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    cfg = write_config(tmp_path, store=redis_server.url)
    procs = [ServerProcess(cfg, tmp_path / f"replica{i}") for i in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:  # all three race to add the configured models
            list(pool.map(lambda p: p.start(), procs))
        for p in procs:
            listed = (
                cat(p.target).ListModels(catalog_pb2.ListModelsRequest(space="vision"), timeout=10).models
            )
            assert sorted(m.model_id for m in listed) == ["big", "small", "tiny"]
        assert len({export(p.target) for p in procs}) == 1
        r = sel(procs[0].target).Select(
            selection_pb2.SelectRequest(space="vision", device_features=DEVICES[1])
        )
        fb = sel(procs[2].target).Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.4))
        assert fb.status == ACCEPTED
    finally:
        for p in procs:
            p.kill()


def test_qoe_model_replicas_learn_the_same_measurements_and_a_restart_replays_them(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Measurements and failures travel in the Redis log: another replica and a restarted one (from the
    log alone) hold the same qoe_model state, bit for bit."""
    with replicas(tmp_path, redis_server, 2, policy="qoe_model", snapshot_every=10_000) as (a, b):
        for i in range(24):
            d = sel(a.target).Select(
                selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 8]), timeout=10
            )
            m = (
                types_pb2.Measurements(failed=True, failure_reason=types_pb2.FAILURE_REASON_OUT_OF_MEMORY)
                if i % 5 == 4
                else types_pb2.Measurements(latency_ms=4.0 + 3 * i, energy_mj=30.0 + i, user_rating=1 + i % 5)
            )
            r = sel(b.target).Feedback(
                selection_pb2.FeedbackRequest(event_id=d.event_id, measurements=m), timeout=10
            )
            assert r.status == ACCEPTED
        first = converge([a.target, b.target], redis_server.client())
        assert first[0][0] == first[1][0] and first[0][2] == 24
        restarted = start_replica(tmp_path, "replica-new")
        try:
            again = converge([restarted.target], redis_server.client())
            assert again[0][0] == first[0][0]
        finally:
            restarted.kill()
