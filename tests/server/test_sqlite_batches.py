"""One group commit of the embedded store, with runs of Feedback events inserted by one statement each: the
same answers, log and apply order as inserting the items one by one.

The batch is committed directly (`SqliteStore._commit` on a connection of its own), so its composition is
exactly what the test says, not whatever the writer thread happened to group."""

from __future__ import annotations

import random
import sqlite3
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from edgesel_server.store import sqlite as S
from edgesel_server.store.base import FEEDBACK, Decision, LogEvent, Snapshot

SPACE = "vision"


def event(eid: str | None, reward: float, kind: str = FEEDBACK) -> LogEvent:
    x = None if eid is None else np.arange(3, dtype=float) + reward
    return LogEvent(SPACE, kind, eid, "m1", x, reward, f'{{"r":{reward}}}'.encode(), 1000.0 + reward)


def commit(tmp: Path, items: list[tuple[str, object]], *, runs: bool) -> tuple[list, list, list]:
    """(each item's answer, the events as applied, the events table) for `items` committed as one batch."""
    store = S.SqliteStore(tmp)
    applied: list[LogEvent] = []
    store.open(applied.append)
    try:
        store.submit_event(event("old", 0.5)).result()  # already in the log: its id again is a duplicate
        applied.clear()
        conn = store._connect()
        batch = [(kind, obj, Future()) for kind, obj in items]
        if not runs:
            store._event_runs = lambda batch: {}  # type: ignore[method-assign]
        store._commit(conn, batch)
        conn.close()
        answers = [
            type(f.exception()).__name__ if f.exception() is not None else f.result() for _, _, f in batch
        ]
        rows = (
            sqlite3.connect(store.path)
            .execute(f"SELECT seq, {S.EVENT_COLUMNS} FROM events ORDER BY seq")
            .fetchall()
        )
        return answers, [(e.seq, e.event_id, e.reward) for e in applied], rows
    finally:
        store.close()


def decision(i: int) -> Decision:
    return Decision(
        event_id=f"d{i}", space=SPACE, model_id="m1", x=np.ones(3), created=1.0, deadline=2.0, propensity=1.0,
        expected_qoe=0.5, bonus=0.1, policy_version=0, eligible=[], prefs={}, owner="",
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_runs_of_events_commit_like_one_by_one(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    items: list[tuple[str, object]] = []
    for i in range(rng.randrange(2, 140)):  # past ROWS_PER_INSERT, so a run is split too
        r = rng.random()
        if r < 0.6:
            items.append(("event", event(f"e{i}", i / 8)))
        elif r < 0.7:
            items.append(("event", event("old", i / 8)))  # in the log already: DuplicateEvent
        elif r < 0.78 and items and items[-1][0] == "event":
            prev = items[-1][1]
            assert isinstance(prev, LogEvent)
            items.append(("event", event(prev.event_id, i / 8)))  # the same id twice in a row
        elif r < 0.85:
            items.append(("event", event(None, i / 8, kind="add_model")))  # no event id
        elif r < 0.95:
            items.append(("decision", decision(i)))
        else:
            snap = Snapshot(SPACE, seq=1, state=b"s", catalog=[], created=1.0)
            items.append(("snapshot", snap))
    one_by_one = commit(tmp_path / "one", items, runs=False)
    in_runs = commit(tmp_path / "runs", items, runs=True)
    assert in_runs == one_by_one
    seqs = [seq for seq, _, _ in in_runs[1]]
    assert seqs == sorted(seqs)  # applied in log order


def test_a_run_answers_seqs_in_batch_order_and_duplicates(tmp_path: Path) -> None:
    items = [("event", event("a", 1)), ("event", event("old", 2)), ("event", event("b", 3)),
             ("event", event("b", 4)), ("event", event("c", 5))]  # fmt: skip
    answers, applied, rows = commit(tmp_path, items, runs=True)
    # An ignored row takes a seq number too (as it does inserted one by one): gaps, never disorder.
    assert answers == [2, "DuplicateEvent", 4, "DuplicateEvent", 6]
    assert applied == [(2, "a", 1.0), (4, "b", 3.0), (6, "c", 5.0)]
    assert [(r[0], r[3]) for r in rows] == [(1, "old"), (2, "a"), (4, "b"), (6, "c")]


def statements_of(store: S.SqliteStore, batch: list[tuple[str, object]]) -> tuple[list[Future], list[str]]:
    """Commit `batch` directly; the futures and the statements the commit ran, in order. (Python's trace
    callback repeats a statement's text for each trigger program it runs: counted once.)"""
    conn = store._connect()
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    futures = [Future() for _ in batch]
    store._commit(conn, [(kind, obj, f) for (kind, obj), f in zip(batch, futures, strict=True)])
    conn.close()
    return futures, list(dict.fromkeys(ran))


def selections(store: S.SqliteStore) -> dict[tuple[str, str], int]:
    rows = sqlite3.connect(store.path).execute("SELECT space, model_id, n FROM selections").fetchall()
    return {(sp, m): n for sp, m, n in rows}


def test_a_commit_of_decisions_or_events_alone_is_one_statement(tmp_path: Path) -> None:
    """Each sqlite3 call hands the GIL to the event loop and back: Selects' commits make one."""
    store = S.SqliteStore(tmp_path)
    store.open(lambda e: None)
    try:
        futures, ran = statements_of(store, [("decision", decision(i)) for i in range(S.ROWS_PER_INSERT)])
        assert [f.result() for f in futures] == [None] * S.ROWS_PER_INSERT
        assert len(ran) == 1 and ran[0].startswith("INSERT OR REPLACE INTO decisions"), ran
        assert selections(store) == {(SPACE, "m1"): S.ROWS_PER_INSERT}
        # So is a commit of Feedback events alone (one run, or a lone one).
        futures, ran = statements_of(store, [("event", event(f"e{i}", i / 8)) for i in range(10)])
        assert [f.result() for f in futures] == list(range(1, 11))
        assert len(ran) == 1 and ran[0].startswith("INSERT OR IGNORE INTO events"), ran
        futures, ran = statements_of(store, [("event", event("e99", 0.5))])
        assert futures[0].result() == 11 and len(ran) == 1, ran
        # More than one statement's worth, or anything else with them: one transaction.
        _, ran = statements_of(store, [("decision", decision(100 + i)) for i in range(S.ROWS_PER_INSERT + 1)])
        assert ran[0].startswith("BEGIN") and ran[-1] == "COMMIT" and len(ran) == 4, ran
    finally:
        store.close()


@pytest.mark.parametrize("seed", range(6))
def test_selections_are_counted_exactly_with_their_decisions(tmp_path: Path, seed: int) -> None:
    """The selections counted by the trigger, over random commits (decisions alone, past one statement, mixed
    with events; deferred ones, stored again), equal the decisions stored, not deferred, per model; an
    activation adds its own."""
    rng = random.Random(seed)
    store = S.SqliteStore(tmp_path)
    store.open(lambda e: None)
    expected: dict[tuple[str, str], int] = {}
    stored: list[Decision] = []
    try:
        for c in range(8):
            batch: list[tuple[str, object]] = []
            for i in range(rng.choice([1, 5, S.ROWS_PER_INSERT, S.ROWS_PER_INSERT + 3])):
                if stored and rng.random() < 0.1:
                    d = rng.choice(stored)  # stored again (INSERT OR REPLACE): counted again, as before
                else:
                    d = decision(c * 1000 + i)
                    d.model_id = rng.choice(["m1", "m2", "m3"])
                    d.deferred = rng.random() < 0.2
                    stored.append(d)
                batch.append(("decision", d))
                if not d.deferred:
                    expected[(SPACE, d.model_id)] = expected.get((SPACE, d.model_id), 0) + 1
            if rng.random() < 0.4:
                batch.insert(rng.randrange(len(batch) + 1), ("event", event(f"e{c}", 0.5)))
            futures, _ = statements_of(store, batch)
            assert all(f.exception() is None for f in futures)
            assert selections(store) == expected
        deferred = next((d for d in stored if d.deferred), None)
        if deferred is not None:
            conn = store._connect()
            assert store._activate(conn, deferred, 5.0, 6.0).fresh
            conn.close()
            expected[(SPACE, deferred.model_id)] = expected.get((SPACE, deferred.model_id), 0) + 1
            assert selections(store) == expected
    finally:
        store.close()
