"""SIGTERM with RPCs in flight: they finish, new ones are refused, a final snapshot is taken, exit code 0."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import grpc

from edgesel.v1 import selection_pb2
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from tests.hardening.support import json_logs, stubs_for, tracebacks
from tests.server.serverproc import ServerProcess, write_config

WORKERS = 24


def test_sigterm_finishes_in_flight_rpcs_then_snapshots(tmp_path: Path) -> None:
    # No periodic snapshot can happen during the test: the only snapshot is the one taken at shutdown.
    proc = ServerProcess(write_config(tmp_path, snapshot_every=1_000_000), tmp_path / "data").start()
    calls: list[tuple[float, float, grpc.StatusCode]] = []  # (start, end, code) of every RPC
    acked: list[str] = []
    stop = threading.Event()

    def worker(n: int) -> None:
        with grpc.insecure_channel(proc.target) as ch:
            stub = sel_grpc.SelectionServiceStub(ch)
            while not stop.is_set():
                for kind in ("select", "feedback"):
                    start = time.monotonic()
                    try:
                        if kind == "select":
                            features = {"ram_gb": 1.0 + n % 8, "battery_percent": 50.0}
                            r = stub.Select(
                                selection_pb2.SelectRequest(space="vision", device_features=features)
                            )
                        else:
                            request = selection_pb2.FeedbackRequest(event_id=r.event_id, reward=(n % 10) / 10)
                            stub.Feedback(request, timeout=10)
                            acked.append(r.event_id)
                        calls.append((start, time.monotonic(), grpc.StatusCode.OK))
                    except grpc.RpcError as e:
                        calls.append((start, time.monotonic(), e.code()))
                        return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    sigterm_at = time.monotonic()
    assert proc.terminate(timeout=30) == 0
    stop.set()
    for t in threads:
        t.join(timeout=30)

    codes = {code for _, _, code in calls}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    in_flight_ok = [c for c in calls if c[0] < sigterm_at < c[1] and c[2] is grpc.StatusCode.OK]
    assert in_flight_ok, "no RPC was in flight when SIGTERM arrived"
    assert len(acked) > 50
    time.sleep(0.2)
    assert any(e.get("msg") == "stopped cleanly" for e in json_logs(proc))
    assert not tracebacks(proc)

    with sqlite3.connect(tmp_path / "data" / "edgesel.sqlite3") as db:
        logged = {r[0] for r in db.execute("SELECT event_id FROM events WHERE kind = 'feedback'")}
        last_seq = db.execute("SELECT MAX(seq) FROM events WHERE space = 'vision'").fetchone()[0]
        snap_seq = db.execute("SELECT MAX(seq) FROM snapshots WHERE space = 'vision'").fetchone()[0]
    assert set(acked) <= logged
    assert snap_seq == last_seq, "the final snapshot is missing or stale"

    # The restart starts from that snapshot with nothing to replay, and has every acknowledged feedback.
    proc = ServerProcess(proc.config, tmp_path / "data").start()
    try:
        ready = next(e for e in json_logs(proc) if e.get("msg") == "space ready" and e["space"] == "vision")
        assert ready["replayed"] == 0 and ready["snapshot_seq"] == last_seq
        with stubs_for(proc.target) as s:
            assert s.total_updates(token=None) == len(logged)
    finally:
        proc.kill()
