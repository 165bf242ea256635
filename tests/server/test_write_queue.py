"""The writer's queue: under load it waits `commit_delay_s` for more writes to share a commit; idle, never.

Each case is made deterministic by looking at the queue, not at a clock: the writer thread is known to have
taken the first write (the queue is empty) before the next one is put."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgesel_server.config import ConfigError, load_config, parse_config
from edgesel_server.engine import Engine
from edgesel_server.store.base import WriteQueue

ROOT = Path(__file__).resolve().parents[2]
LONG = 60.0  # a delay no test could sit out: a queue that waited it would fail the join below


def take_batch(q: WriteQueue) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(q.next_batch()), daemon=True)
    t.start()
    return t, out


def wait_until_taken(q: WriteQueue) -> None:
    deadline = time.monotonic() + 30
    while not q._q.empty():
        assert time.monotonic() < deadline, "the writer thread never took the first write"
        time.sleep(0.001)


def test_a_busy_writer_waits_for_more_writes_to_share_the_commit():
    q = WriteQueue(commit_delay_s=LONG)
    q.submit("decision", "a")  # queued before the writer looks: writes are arriving faster than commits
    t, out = take_batch(q)
    wait_until_taken(q)
    q.submit("decision", "b")  # arrives while the writer holds "a": same commit
    q.close()  # ends the wait at once (nothing is left waiting out the delay)
    t.join(timeout=30)
    assert not t.is_alive()
    batch, stop = out[0]
    assert [obj for _, obj, _ in batch] == ["a", "b"]
    assert stop


def test_an_idle_writer_commits_a_lone_write_at_once():
    q = WriteQueue(commit_delay_s=LONG)
    t, out = take_batch(q)  # blocks: nothing queued, the writer is idle
    q.submit("decision", "a")
    t.join(timeout=30)  # would sit out LONG if an idle writer waited
    assert not t.is_alive()
    batch, stop = out[0]
    assert [obj for _, obj, _ in batch] == ["a"]
    assert not stop


def test_without_a_delay_a_busy_writer_takes_only_what_is_queued():
    q = WriteQueue(commit_delay_s=0.0)
    q.submit("decision", "a")
    q.submit("decision", "b")
    batch, stop = q.next_batch()
    assert [obj for _, obj, _ in batch] == ["a", "b"]
    assert not stop


def test_the_delay_never_grows_a_batch_past_batch_max():
    q = WriteQueue(batch_max=3, commit_delay_s=LONG)
    for i in range(5):
        q.submit("decision", i)
    batch, _ = q.next_batch()  # full at 3: commits without waiting
    assert [obj for _, obj, _ in batch] == [0, 1, 2]


@pytest.mark.parametrize("value", [-1, 101, "2"])
def test_commit_delay_ms_is_checked(value):
    with pytest.raises(ConfigError, match="commit_delay_ms"):
        parse_config({"server": {"commit_delay_ms": value}, "space": []})


def test_commit_delay_ms_reaches_the_store():
    cfg = load_config(ROOT / "examples" / "edgesel.toml")
    assert cfg.commit_delay_ms == 2.0
    cfg.commit_delay_ms = 3.5
    assert Engine(cfg).store._writes.commit_delay_s == pytest.approx(0.0035)
