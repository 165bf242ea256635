"""`[space.policy] half_life` through a real server: the config reaches the core, and a restart (snapshot +
log replay, after kill -9) reproduces the forgetting state bit for bit."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from edgesel.v1 import selection_pb2
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.core import Bandit, QoeModel
from tests.server.serverproc import ServerProcess, write_config
from tests.server.test_durability import DEVICES, export

HALF_LIFE = 25


def drive(target: str, n: int) -> None:
    with grpc.insecure_channel(target) as ch:
        s = sel_grpc.SelectionServiceStub(ch)
        for i in range(n):
            r = s.Select(
                selection_pb2.SelectRequest(space="vision", device_features=DEVICES[i % 8]), timeout=5
            )
            fb = s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=(i % 7) / 7), timeout=5)
            assert fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED


def test_half_life_reaches_the_core_and_restart_is_bit_identical(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, snapshot_every=30, half_life=HALF_LIFE)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    try:
        drive(proc.target, 250)
        state, total = export(proc.target)
    finally:
        proc.kill()  # SIGKILL: the restart must replay the log tail after the last snapshot
    assert total == 250
    bandit = Bandit.from_bytes(state)
    assert bandit.half_life == HALF_LIFE
    # The discount is really applied: without forgetting trace(A) grows with every update; with it, it is
    # bounded by the prior plus Σ γ^t |x|² ≤ |x|²_max / (1 − γ).
    busiest = max(bandit.arm_ids(), key=lambda a: bandit.arm_stats(a)["n_updates"])
    st = bandit.arm_stats(busiest)
    d = st["a"].shape[0]
    gamma = 2.0 ** (-1.0 / HALF_LIFE)
    assert st["n_updates"] > 3 * HALF_LIFE
    assert np.trace(st["a"]) <= 2 * d * bandit.lam + d / (1 - gamma)
    proc = ServerProcess(cfg, data, port=port).start()
    try:
        assert export(proc.target) == (state, total)
        drive(proc.target, 40)
        state2, _ = export(proc.target)
    finally:
        proc.terminate()  # graceful: a final snapshot
    # half_life is a setting: a restart with another value keeps the learned state
    cfg0 = write_config(tmp_path, snapshot_every=30, half_life=0)
    assert cfg0 == cfg
    proc = ServerProcess(cfg0, data, port=port).start()
    try:
        state0, total0 = export(proc.target)
    finally:
        proc.kill()
    assert total0 == 290
    restored = Bandit.from_bytes(state0)
    assert restored.half_life == 0
    before = Bandit.from_bytes(state2)
    for arm in before.arm_ids():
        assert restored.arm_stats(arm)["a"].tobytes() == before.arm_stats(arm)["a"].tobytes()


def test_qoe_model_half_life_reaches_the_core_and_restart_is_bit_identical(tmp_path: Path) -> None:
    """The default policy forgets too: the config's half_life reaches every target of the QoeModel, and a
    kill -9 + restart (snapshot + log replay) reproduces its state bit for bit."""
    cfg = write_config(tmp_path, policy="qoe_model", snapshot_every=30, half_life=HALF_LIFE)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    try:
        drive(proc.target, 120)
        state, total = export(proc.target)
    finally:
        proc.kill()
    assert total == 120
    model = QoeModel.from_bytes(state)
    assert model.half_life == HALF_LIFE
    assert model.target_stats()["rating"]["n_updates"] == 120  # scalar rewards teach the rating target
    proc = ServerProcess(cfg, data, port=port).start()
    try:
        assert export(proc.target) == (state, total)
    finally:
        proc.kill()
