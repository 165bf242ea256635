"""A full disk: Feedback fails with UNAVAILABLE (never a false ack), nothing acknowledged is lost, and the
device's retry succeeds once space returns. The data directory sits on a small tmpfs mounted by the test."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import selection_pb2
from tests.hardening.support import PHONE, Stubs, stubs_for, tracebacks
from tests.server.serverproc import ServerProcess, write_config

ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(path: Path) -> None:
    """Write until the file system says ENOSPC, with ever smaller chunks."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 9):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break


def select_and_feedback(s: Stubs, reward: float) -> tuple[str, grpc.StatusCode]:
    r = s.select(token=None, device_features=PHONE)
    try:
        s.feedback(r.event_id, reward, token=None)
        return r.event_id, grpc.StatusCode.OK
    except grpc.RpcError as e:
        return r.event_id, e.code()


def test_disk_full_gives_unavailable_and_recovers(tmp_path: Path, small_disk: Path) -> None:
    cfg = write_config(tmp_path, snapshot_every=1_000_000)
    data = small_disk / "data"
    proc = ServerProcess(cfg, data).start()
    ballast = small_disk / "ballast"
    try:
        with stubs_for(proc.target) as s:
            acked = []
            for _ in range(20):
                event_id, code = select_and_feedback(s, 0.5)
                assert code is grpc.StatusCode.OK
                acked.append(event_id)
            fill(ballast)
            # SQLite reuses space it already has (the WAL) for a while; keep going until a write needs more.
            failed = None
            for _ in range(5000):
                event_id, code = select_and_feedback(s, 0.25)
                if code is grpc.StatusCode.OK:
                    acked.append(event_id)
                    continue
                assert code is grpc.StatusCode.UNAVAILABLE, code
                failed = event_id
                break
            assert failed is not None, "the disk never filled up"
            # Still full: the retry is refused again, not falsely acknowledged; selection keeps serving.
            assert pytest.raises(grpc.RpcError, s.feedback, failed, 0.25, None).value.code() is (
                grpc.StatusCode.UNAVAILABLE
            )
            assert s.select(token=None).model.model_id
            assert s.total_updates(token=None) == len(acked)

            ballast.unlink()
            deadline = time.monotonic() + 10
            while True:  # the device's retry, with the decision kept pending on the server
                try:
                    assert s.feedback(failed, 0.25, token=None).status == ACCEPTED
                    break
                except grpc.RpcError as e:
                    assert e.code() is grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    time.sleep(0.2)
            acked.append(failed)
            event_id, code = select_and_feedback(s, 0.75)
            assert code is grpc.StatusCode.OK
            acked.append(event_id)
            assert s.total_updates(token=None) == len(acked)
        assert not tracebacks(proc)
        assert any("store write failed" in line and "full" in line for line in proc.stderr_lines)
        # Everything acknowledged is durable, exactly once.
        proc.kill()
        proc = ServerProcess(cfg, data).start()
        with stubs_for(proc.target) as s:
            assert s.total_updates(token=None) == len(acked)
        with sqlite3.connect(data / "edgesel.sqlite3") as db:
            logged = [r[0] for r in db.execute("SELECT event_id FROM events WHERE kind = 'feedback'")]
        assert sorted(logged) == sorted(acked)
    finally:
        proc.kill()
