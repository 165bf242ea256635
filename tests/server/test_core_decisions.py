"""The core makes the whole decision (forced sampling and propensity included) with the generator in its
snapshot: through a real server, a restarted space decides as one that never stopped, and the propensities
the server logs are the core's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import grpc

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.cli import main as server_main
from edgesel_server.core import Bandit
from tests.server.serverproc import ServerProcess, write_config

DEVICES = [
    {"ram_gb": 2.0, "has_npu": 0.0, "battery_percent": 40.0},
    {"ram_gb": 16.0, "has_npu": 1.0, "battery_percent": 100.0},
    {"ram_gb": 6.0, "has_npu": 0.0, "battery_percent": 75.0},
]
REWARD = {"tiny": 0.3, "small": 0.6, "big": 0.5}


def config(tmp_path: Path, policy: str, eps: float) -> Path:
    cfg = write_config(tmp_path, policy=policy, durability="process")
    text = cfg.read_text().replace(f'kind = "{policy}"', f'kind = "{policy}"\nforced_sampling = {eps}')
    assert text != cfg.read_text()
    cfg.write_text(text)
    return cfg


def decide(stub: sel_grpc.SelectionServiceStub, start: int, n: int) -> list[tuple]:
    """n Select + Feedback rounds; the reward depends on the round and the pick only."""
    out = []
    for i in range(start, start + n):
        r = stub.Select(
            selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 3]), timeout=10
        )
        m = r.model.model_id
        out.append((m, r.expected_qoe, r.exploration_bonus, r.score, r.exploratory))
        reward = REWARD[m] + 0.1 * ((i * 7) % 5) / 5
        stub.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=reward), timeout=10)
    return out


def test_restarted_space_makes_the_same_next_1000_decisions(tmp_path: Path) -> None:
    cfg = config(tmp_path, "lin_ts", 0.3)  # both random streams: forced samples and Thompson draws
    never = ServerProcess(cfg, tmp_path / "never").start()
    restarted = ServerProcess(cfg, tmp_path / "restarted").start()
    try:
        with grpc.insecure_channel(never.target) as a, grpc.insecure_channel(restarted.target) as b:
            warm_a = decide(sel_grpc.SelectionServiceStub(a), 0, 60)
            warm_b = decide(sel_grpc.SelectionServiceStub(b), 0, 60)
        assert warm_a == warm_b
        assert restarted.terminate() == 0  # graceful: the final snapshot holds the generator state
        restarted = ServerProcess(cfg, tmp_path / "restarted").start()
        with grpc.insecure_channel(never.target) as a, grpc.insecure_channel(restarted.target) as b:
            got_a = decide(sel_grpc.SelectionServiceStub(a), 60, 1000)
            got_b = decide(sel_grpc.SelectionServiceStub(b), 60, 1000)
    finally:
        for p in (never, restarted):
            if p.alive():
                p.terminate()
    assert got_a == got_b
    assert sum(e for *_, e in got_a) > 100  # forced samples did happen


def test_logged_propensities_are_the_cores(tmp_path: Path) -> None:
    cfg = config(tmp_path, "hybrid_linucb", 0.3)
    proc = ServerProcess(cfg, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            cat = cat_grpc.CatalogServiceStub(ch)
            # the server's core as it is before any decision: parameters, arms and generator state
            twin = Bandit.from_bytes(cat.ExportState(catalog_pb2.ExportStateRequest(space="vision")).state)
            decide(sel_grpc.SelectionServiceStub(ch), 0, 300)
    finally:
        assert proc.terminate() == 0
    out = tmp_path / "log.jsonl"
    args = ["--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--export-log", str(out)]
    assert server_main([*args, "--space", "vision"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    decisions = [d for d in lines if d["type"] == "decision"]
    assert len(decisions) == 300 and lines[0]["propensities"] == "exact"
    eps, k = twin.forced_sampling, len(twin)
    assert (eps, k) == (0.3, 3)
    for d in decisions:
        s = twin.select(d["context"])
        assert (s.id, s.propensity) == (d["arm"], d["propensity"])
        assert s.propensity in (1 - eps + eps / k, eps / k)
        twin.update(s.id, d["context"], d["reward"])
    assert not any(math.isnan(d["propensity"]) for d in decisions)
