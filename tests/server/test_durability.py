"""kill -9 during a stream of Feedbacks: every acknowledged one must be in the state after restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import grpc

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from tests.server.serverproc import ServerProcess, write_config

DEVICES = [{"ram_gb": 1.0 + i, "has_npu": float(i % 2), "battery_percent": 10.0 * i} for i in range(8)]


def feeder(target: str, stop: threading.Event, acked: list[tuple[str, float]], worker: int) -> None:
    """Select + Feedback in a loop; records only what the server acknowledged."""
    with grpc.insecure_channel(target) as ch:
        s = sel_grpc.SelectionServiceStub(ch)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = s.Select(
                    selection_pb2.SelectRequest(space="vision", device_features=DEVICES[(worker + i) % 8]),
                    timeout=5,
                )
                reward = ((worker * 7 + i) % 11) / 10
                fb = s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=reward), timeout=5)
                if fb.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED:
                    acked.append((r.event_id, reward))
            except grpc.RpcError:
                return  # the server was killed


def export(target: str) -> tuple[bytes, int]:
    with grpc.insecure_channel(target) as ch:
        cat = cat_grpc.CatalogServiceStub(ch)
        state = cat.ExportState(catalog_pb2.ExportStateRequest(space="vision"), timeout=10).state
        total = cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="vision"), timeout=10).total_updates
        return state, total


def test_kill9_loses_no_acknowledged_feedback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, snapshot_every=40)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    acked: list[tuple[str, float]] = []
    for round_ in range(3):
        stop = threading.Event()
        workers = [threading.Thread(target=feeder, args=(proc.target, stop, acked, w)) for w in range(8)]
        for w in workers:
            w.start()
        time.sleep(1.5)
        proc.kill()  # SIGKILL while the workers are mid-stream
        stop.set()
        for w in workers:
            w.join(timeout=30)
        proc = ServerProcess(cfg, data, port=port).start()
        state, total = export(proc.target)
        with sqlite3.connect(data / "edgesel.sqlite3") as db:
            logged = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'feedback'").fetchone()[0]
        assert len(acked) > 20 * (round_ + 1), "the load did not get going"
        # Everything acknowledged is applied; unacknowledged writes that did commit are applied too.
        assert total == logged >= len(acked), (total, logged, len(acked))
    with grpc.insecure_channel(proc.target) as ch:
        s = sel_grpc.SelectionServiceStub(ch)
        for event_id, reward in acked:
            fb = s.Feedback(selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=5)
            assert fb.status == selection_pb2.FEEDBACK_STATUS_DUPLICATE, event_id
    assert export(proc.target)[1] == total, "re-sent feedback was learned twice"
    # Restarting again (snapshot + replay) gives the very same learned state, bit for bit.
    proc.kill()
    proc = ServerProcess(cfg, data, port=port).start()
    try:
        assert export(proc.target) == (state, total)
    finally:
        proc.kill()
