"""SIGKILL five times under load: every acknowledged Feedback is learned exactly once, and the learned state
equals an independent replay of the durable log, bit for bit.

The replay runs in the test process: it reads the SQLite `events` table and rebuilds a Bandit with the
space's policy, adding arms with the normalized vectors of the server's own FeatureSchema (from the config).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgesel.v1 import selection_pb2
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.catalog import Model
from edgesel_server.config import load_config
from edgesel_server.core import Bandit
from edgesel_server.schema import FeatureSchema
from tests.hardening.support import stubs_for, tracebacks
from tests.server.serverproc import ServerProcess, write_config

ROUNDS = 5
WORKERS = 12
DEVICES = [{"ram_gb": 0.5 * 2**i, "has_npu": float(i % 2), "battery_percent": 12.0 * i} for i in range(8)]


def replay(config: Path, db_path: Path, space_name: str) -> tuple[bytes, list[tuple[str, float]]]:
    """The state the log implies, rebuilt without the server's code for restoring or applying events."""
    space = next(s for s in load_config(config).spaces if s.name == space_name)
    model_schema = FeatureSchema(space.model_features, kind="model")
    uses_model_features = space.policy.kind != "disjoint_linucb"
    p = space.policy
    bandit = Bandit(
        p.kind,
        len(FeatureSchema(space.device_features, kind="device")),
        len(model_schema) if uses_model_features else 0,
        alpha=p.alpha,
        lam=p.lam,
        refactor_every=p.refactor_every,
        seed=p.seed,
    )
    feedback = []
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT kind, event_id, model_id, x, reward, payload FROM events WHERE space = ? ORDER BY seq",
            (space_name,),
        ).fetchall()
    for kind, event_id, model_id, x, reward, payload in rows:
        if kind == "add_model":
            model = Model.from_dict(json.loads(payload))
            if uses_model_features:
                bandit.add_arm(model.id, model_schema.vector(model.features))
            else:
                bandit.add_arm(model.id)
        elif kind == "feedback":
            bandit.update(model_id, np.frombuffer(x, dtype="<f8"), reward)
            feedback.append((event_id, reward))
        else:
            raise AssertionError(f"unexpected event kind {kind!r} in this test")
    return bandit.to_bytes(), feedback


def load(target: str, stop: threading.Event, acked: list[tuple[str, float]], worker: int) -> None:
    """Select + Feedback until the server dies; re-sends some acknowledged feedback (must be DUPLICATE)."""
    rng = random.Random(worker)
    with grpc.insecure_channel(target) as ch:
        stub = sel_grpc.SelectionServiceStub(ch)
        while not stop.is_set():
            try:
                r = stub.Select(
                    selection_pb2.SelectRequest(space="vision", device_features=rng.choice(DEVICES)),
                    timeout=5,
                )
                reward = round(rng.random(), 3)
                fb = stub.Feedback(
                    selection_pb2.FeedbackRequest(event_id=r.event_id, reward=reward), timeout=5
                )
                assert fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
                acked.append((r.event_id, reward))
                if rng.random() < 0.1:
                    again = stub.Feedback(
                        selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.0), timeout=5
                    )
                    assert again.status == selection_pb2.FEEDBACK_STATUS_DUPLICATE
            except grpc.RpcError:
                return  # killed


@pytest.mark.parametrize("policy", ["hybrid_linucb", "disjoint_linucb"])
def test_kill9_under_load_matches_an_independent_replay(tmp_path: Path, policy: str) -> None:
    cfg = write_config(tmp_path, policy=policy, snapshot_every=30)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    acked: list[tuple[str, float]] = []
    rng = random.Random(0)
    try:
        for round_ in range(ROUNDS):
            stop = threading.Event()
            workers = [
                threading.Thread(target=load, args=(proc.target, stop, acked, w)) for w in range(WORKERS)
            ]
            for w in workers:
                w.start()
            time.sleep(rng.uniform(0.6, 1.4))
            assert not tracebacks(proc), tracebacks(proc)
            proc.kill()
            stop.set()
            for w in workers:
                w.join(timeout=30)
            proc = ServerProcess(cfg, data, port=port).start()

            expected, logged = replay(cfg, data / "edgesel.sqlite3", "vision")
            with stubs_for(proc.target) as s:
                state, total = s.export(token=None), s.total_updates(token=None)
            assert len(acked) > 30 * (round_ + 1), "the load did not get going"
            rewards = dict(logged)
            assert len(rewards) == len(logged) == total, "a feedback was logged or applied twice"
            lost = [(e, r) for e, r in acked if rewards.get(e) != r]
            assert not lost, f"{len(lost)} acknowledged feedback(s) missing from the log: {lost[:3]}"
            assert state == expected, f"round {round_}: the server's state differs from a replay of its log"
    finally:
        proc.kill()
