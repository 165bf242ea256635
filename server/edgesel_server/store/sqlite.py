"""The embedded default store: one SQLite database (WAL) under the data directory.

All writes go through one writer thread that commits whatever has queued up as one transaction (group
commit): with `durability = "fsync"` every commit is fsynced (synchronous=FULL), yet many concurrent
Feedbacks share one fsync. After each commit the writer applies the committed events to the learned state
in sequence order and only then resolves the callers' futures, so "acknowledged" means "durable and applied".
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from edgesel_server.errors import UnknownEvent
from edgesel_server.store.base import (
    MAX_OBSERVATIONS,
    Activation,
    ApplyFn,
    BatchApplyFn,
    Closure,
    Decision,
    DuplicateEvent,
    DuplicateObservation,
    LogEvent,
    Observation,
    Snapshot,
    StaleClose,
    Store,
    StoreUnavailable,
    TooManyObservations,
    WriteQueue,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    event_id TEXT PRIMARY KEY,
    space TEXT NOT NULL,
    model_id TEXT NOT NULL,
    x BLOB NOT NULL,
    created REAL NOT NULL,
    deadline REAL NOT NULL,
    propensity REAL NOT NULL,
    expected_qoe REAL NOT NULL,
    bonus REAL NOT NULL,
    policy_version INTEGER NOT NULL,
    eligible TEXT NOT NULL,
    prefs TEXT NOT NULL,
    owner TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_deadline ON decisions (deadline);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    space TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_id TEXT UNIQUE,
    model_id TEXT NOT NULL,
    x BLOB,
    reward REAL NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_space_seq ON events (space, seq);
CREATE TABLE IF NOT EXISTS selections (
    space TEXT NOT NULL,
    model_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (space, model_id)
) WITHOUT ROWID;
-- A decision counts as a selection when it is stored (a deferred one when it is activated: _activate), in
-- the statement that stores it: a commit of decisions alone is then one statement (see _commit). Releases
-- before it counted in Python: going back to one needs DROP TRIGGER first (docs/performance.md).
CREATE TRIGGER IF NOT EXISTS decisions_count_selections AFTER INSERT ON decisions WHEN NEW.deferred = 0
BEGIN
    INSERT INTO selections (space, model_id, n) VALUES (NEW.space, NEW.model_id, 1)
    ON CONFLICT (space, model_id) DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS observations (
    event_id TEXT NOT NULL,
    key TEXT NOT NULL,
    n INTEGER NOT NULL,
    reward REAL NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (event_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    space TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created REAL NOT NULL,
    state BLOB NOT NULL,
    catalog TEXT NOT NULL,
    PRIMARY KEY (space, seq)
);
"""

SNAPSHOTS_KEPT = 3
# Databases written before the selections table existed: count the decisions still kept.
BACKFILL_SELECTIONS = (
    "INSERT INTO selections (space, model_id, n) SELECT space, model_id, COUNT(*) FROM decisions "
    "GROUP BY space, model_id"
)
COUNT_SELECTIONS = (
    "INSERT INTO selections (space, model_id, n) VALUES (?, ?, ?) "
    "ON CONFLICT (space, model_id) DO UPDATE SET n = n + excluded.n"
)


def _x_blob(x: np.ndarray | None) -> bytes | None:
    return None if x is None else np.ascontiguousarray(x, dtype="<f8").tobytes()


def _x_array(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f8").copy()


DECISION_COLUMNS = (
    "event_id, space, model_id, x, created, deadline, propensity, expected_qoe, bonus, policy_version, "
    "eligible, prefs, owner, report_group, device_class, deferred, activated"
)
INSERT_DECISIONS = f"INSERT OR REPLACE INTO decisions ({DECISION_COLUMNS}) VALUES"  # + one (?,...) per row
EVENT_COLUMNS = "space, kind, event_id, model_id, x, reward, payload, created"
# Rows of one commit go in as multi-row INSERTs of at most this many rows (so at most this many distinct
# statements for SQLite's statement cache). Why: each sqlite3 call, and each row of an executemany, gives the
# GIL up and takes it back, and with a busy event loop taking it back costs far more than the row itself.
ROWS_PER_INSERT = 64


def _values(n: int, width: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return ",".join([row] * n)


def _chunks(rows: list, size: int = ROWS_PER_INSERT) -> Iterator[list]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


# Columns added after the first release: (table, column, declaration) added to older databases at open.
ADDED_COLUMNS = (
    ("decisions", "report_group", "TEXT NOT NULL DEFAULT 'policy'"),
    ("decisions", "device_class", "TEXT NOT NULL DEFAULT 'all'"),
    ("snapshots", "derived", "TEXT NOT NULL DEFAULT '{}'"),
    ("decisions", "deferred", "INTEGER NOT NULL DEFAULT 0"),
    ("decisions", "activated", "REAL"),  # NULL: not activated (or never deferred)
)
ACTIVATE = "UPDATE decisions SET activated = ?, deadline = ? WHERE event_id = ? AND activated IS NULL"


# SQLite stores NaN as NULL, which the NOT NULL column refuses: a Thompson-sampling decision's propensity
# (NaN, no closed form) is stored as this, and read back as NaN.
NO_PROPENSITY = -1.0


def _decision_row(d: Decision) -> tuple:
    propensity = d.propensity if math.isfinite(d.propensity) else NO_PROPENSITY
    return (
        d.event_id, d.space, d.model_id, _x_blob(d.x), d.created, d.deadline, propensity, d.expected_qoe,
        d.bonus, d.policy_version, json.dumps(d.eligible) if d.eligible else "[]",
        d.prefs_json() if d.prefs else "{}", d.owner, d.group, d.device_class, int(d.deferred),
        d.activated or None,
    )  # fmt: skip


def _event_row(ev: LogEvent) -> tuple:
    created = ev.created or time.time()
    return (ev.space, ev.kind, ev.event_id, ev.model_id, _x_blob(ev.x), ev.reward, ev.payload, created)


def _row_decision(row: sqlite3.Row) -> Decision:
    return Decision(
        event_id=row["event_id"],
        space=row["space"],
        model_id=row["model_id"],
        x=np.frombuffer(row["x"], dtype="<f8").copy(),
        created=row["created"],
        deadline=row["deadline"],
        propensity=math.nan if row["propensity"] == NO_PROPENSITY else row["propensity"],
        expected_qoe=row["expected_qoe"],
        bonus=row["bonus"],
        policy_version=row["policy_version"],
        eligible=json.loads(row["eligible"]),
        prefs=json.loads(row["prefs"]),
        owner=row["owner"],
        group=row["report_group"],
        device_class=row["device_class"],
        deferred=bool(row["deferred"]),
        activated=row["activated"] or 0.0,
    )


def _row_observation(row: sqlite3.Row) -> Observation:
    return Observation.from_record(row["event_id"], row["key"], row["reward"], row["n"], row["record"])


def _row_event(row: sqlite3.Row) -> LogEvent:
    return LogEvent(
        space=row["space"],
        kind=row["kind"],
        event_id=row["event_id"],
        model_id=row["model_id"],
        x=_x_array(row["x"]),
        reward=row["reward"],
        payload=bytes(row["payload"]),
        created=row["created"],
        seq=row["seq"],
    )


class SqliteStore(Store):
    def __init__(self, data_dir: Path, *, durability: str = "fsync", commit_delay_s: float = 0.0) -> None:
        self.path = Path(data_dir) / "edgesel.sqlite3"
        self.durability = durability
        self._writes = WriteQueue(commit_delay_s=commit_delay_s)
        self._writer: threading.Thread | None = None
        self._apply: ApplyFn | None = None
        self._read_local = threading.local()

    # -- connections -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'fsync' else 'NORMAL'}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._read_local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._read_local.conn = conn
        return conn

    def open(self, apply: ApplyFn, apply_batch: BatchApplyFn | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._apply = apply
        conn = self._connect()
        had_selections = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'selections'"
        ).fetchone()
        conn.executescript(SCHEMA)
        for table, column, decl in ADDED_COLUMNS:
            have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        if not had_selections:
            conn.execute(BACKFILL_SELECTIONS)
        conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="edgesel-sqlite-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None and not self._writes.closed:
            self._writes.close()
            self._writer.join(timeout=30)
        conn = getattr(self._read_local, "conn", None)
        if conn is not None:
            conn.close()
            self._read_local.conn = None

    # -- writes ------------------------------------------------------------------------------------
    def save_snapshot(self, snap: Snapshot) -> None:
        self._writes.submit("snapshot", snap).result()

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            stop = False
            while not stop:
                batch, stop = self._writes.next_batch()
                if batch:
                    self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple]) -> None:
        results: list[tuple[Future, object]] = []
        committed: list[LogEvent] = []
        started = time.perf_counter()
        # Each sqlite3 call gives the GIL up and must take it back from the busy event loop, which costs far
        # more than the SQL. So a batch that one statement can write (what Selects make: decisions alone, up
        # to one multi-row INSERT; what Feedbacks make: one run of events, or a lone one) is that statement
        # in SQLite's own implicit transaction, the decisions' selections counted by the trigger.
        decisions = [obj for kind, obj, _ in batch if kind == "decision"]
        # Runs of consecutive Feedback events go in with one statement each, when the commit reaches them.
        runs = self._event_runs(batch)
        one_statement = (
            len(decisions) == len(batch) <= ROWS_PER_INSERT
            or runs.get(0) == len(batch)
            or (len(batch) == 1 and batch[0][0] == "event")
        )
        try:
            if not one_statement:
                conn.execute("BEGIN IMMEDIATE")
            # Decisions go in first, in multi-row INSERTs: most of the rows, and they need no per-row answer.
            for rows in _chunks(decisions):
                values = [v for d in rows for v in _decision_row(d)]
                conn.execute(f"{INSERT_DECISIONS} {_values(len(rows), 17)}", values)
            inserted: dict[int, int | None] = {}
            for i, (kind, obj, fut) in enumerate(batch):
                if i in runs:
                    events = [batch[k][1] for k in range(i, runs[i])]
                    inserted.update(zip(range(i, runs[i]), self._insert_run(conn, events), strict=True))
                if kind == "decision":
                    results.append((fut, None))
                elif kind in ("event", "close"):
                    event, expected = (obj, None) if kind == "event" else obj
                    found = None if expected is None else self._count_observations(conn, event.event_id)
                    if i in inserted:
                        seq = inserted[i]
                    else:
                        seq = None if found != expected else self._insert_run(conn, [event])[0]
                    if found != expected:
                        assert expected is not None and found is not None
                        results.append((fut, StaleClose(expected, found)))
                    elif seq is None:
                        closure = self._closure(conn, event.event_id)
                        assert closure is not None
                        results.append((fut, DuplicateEvent(event.event_id, closure)))
                    else:
                        event.seq = seq
                        committed.append(event)
                        results.append((fut, seq))
                elif kind == "observation":
                    results.append((fut, self._insert_observation(conn, obj[0])))
                elif kind == "activate":
                    results.append((fut, self._activate(conn, *obj)))
                else:
                    self._insert_snapshot(conn, obj)
                    results.append((fut, None))
            if not one_statement:
                conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("store write failed, %d request(s) not acknowledged: %s", len(batch), e)
            err = StoreUnavailable(f"the store cannot write: {e}")
            for _, _, fut in batch:
                fut.set_exception(err)
            self._observe_commit(started, ok=False)
            return
        self._observe_commit(started, ok=True)
        # Apply in log order before anyone hears "ok": an ack means durable *and* learned.
        committed.sort(key=lambda e: e.seq)
        for ev in committed:
            try:
                assert self._apply is not None
                self._apply(ev)
            except Exception:  # a bug here must not wedge the writer; the event is durable and replays
                log.exception("applying event seq=%d failed", ev.seq)
        for fut, res in results:
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def _observe_commit(self, started: float, *, ok: bool) -> None:
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started, ok)

    @staticmethod
    def _event_runs(batch: list[tuple]) -> dict[int, int]:
        """{start: end} of each run of >= 2 consecutive plain events with distinct event ids (at most
        ROWS_PER_INSERT): those go in with one statement when the commit reaches them, in batch order."""
        runs: dict[int, int] = {}
        i = 0
        while i < len(batch):
            j, ids = i, set()
            while j < len(batch) and j - i < ROWS_PER_INSERT:
                kind, obj, _ = batch[j]
                if kind != "event" or obj.event_id is None or obj.event_id in ids:
                    break
                ids.add(obj.event_id)
                j += 1
            if j - i >= 2:
                runs[i] = j
            i = max(j, i + 1)
        return runs

    @staticmethod
    def _insert_run(conn: sqlite3.Connection, events: list[LogEvent]) -> list[int | None]:
        """Each event's seq, or None where its event id was in the log already (one statement; a lone event is
        a run of one, and the only way a model event, whose event id is NULL, goes in)."""
        values = [v for e in events for v in _event_row(e)]
        sql = f"INSERT OR IGNORE INTO events ({EVENT_COLUMNS}) VALUES {_values(len(events), 8)}"
        cur = conn.execute(sql, values)
        # The rows that went in took consecutive seqs in VALUES order (AUTOINCREMENT; the only writer),
        # the last one lastrowid. (Not RETURNING: each row it returns is one more GIL round trip.)
        n, last = cur.rowcount, cur.lastrowid
        if n == 0:
            return [None] * len(events)
        assert last is not None  # a row went in
        if n == len(events):
            return list(range(last - n + 1, last + 1))
        # Some event ids were in the log already (a retried Feedback; a run's ids are distinct), and the rows
        # ignored may have used up seqs too. Every row that went in now has a higher seq than any row that was
        # there before, so the n highest of the run's ids are the ones that went in.
        ids = [e.event_id for e in events]
        sql = f"SELECT seq, event_id FROM events WHERE event_id IN ({','.join('?' * len(ids))})"
        rows = conn.execute(sql, ids)
        seqs = dict(sorted(((eid, seq) for seq, eid in rows), key=lambda r: r[1])[-n:])
        return [seqs.get(eid) for eid in ids]

    @staticmethod
    def _count_observations(conn: sqlite3.Connection, event_id: str | None) -> int:
        row = conn.execute("SELECT COUNT(*) FROM observations WHERE event_id = ?", (event_id,)).fetchone()
        return int(row[0])

    def _insert_observation(self, conn: sqlite3.Connection, o: Observation) -> int | BaseException:
        """Its place n, unless the decision is closed (DuplicateEvent) or the key is there already."""
        closure = self._closure(conn, o.event_id)
        if closure is not None:
            return DuplicateEvent(o.event_id, closure)
        row = conn.execute(
            "SELECT * FROM observations WHERE event_id = ? AND key = ?", (o.event_id, o.key)
        ).fetchone()
        if row is not None:
            return DuplicateObservation(_row_observation(row))
        n = self._count_observations(conn, o.event_id) + 1
        if n > MAX_OBSERVATIONS:
            return TooManyObservations(o.event_id)
        conn.execute(
            "INSERT INTO observations (event_id, key, n, reward, record, created) VALUES (?,?,?,?,?,?)",
            (o.event_id, o.key, n, o.reward, o.record_json(), o.created),
        )
        return n

    @staticmethod
    def _activate(
        conn: sqlite3.Connection, d: Decision, activated: float, deadline: float
    ) -> Activation | BaseException:
        if conn.execute(ACTIVATE, (activated, deadline, d.event_id)).rowcount == 1:
            conn.execute(COUNT_SELECTIONS, (d.space, d.model_id, 1))
            return Activation(activated, deadline, fresh=True)
        row = conn.execute(
            "SELECT activated, deadline FROM decisions WHERE event_id = ?", (d.event_id,)
        ).fetchone()
        if row is None:  # purged meanwhile
            return UnknownEvent(f"unknown event id {d.event_id!r}", field="event_id")
        return Activation(float(row["activated"]), float(row["deadline"]), fresh=False)

    @staticmethod
    def _insert_snapshot(conn: sqlite3.Connection, s: Snapshot) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO snapshots (space, seq, created, state, catalog, derived) "
            "VALUES (?,?,?,?,?,?)",
            (s.space, s.seq, s.created, s.state, json.dumps(s.catalog), json.dumps(s.derived)),
        )
        conn.execute(
            "DELETE FROM snapshots WHERE space = ? AND seq NOT IN "
            "(SELECT seq FROM snapshots WHERE space = ? ORDER BY seq DESC LIMIT ?)",
            (s.space, s.space, SNAPSHOTS_KEPT),
        )

    # -- reads -------------------------------------------------------------------------------------
    def latest_snapshot(self, space: str) -> Snapshot | None:
        row = (
            self._reader()
            .execute("SELECT * FROM snapshots WHERE space = ? ORDER BY seq DESC LIMIT 1", (space,))
            .fetchone()
        )
        if row is None:
            return None
        return Snapshot(
            space,
            row["seq"],
            bytes(row["state"]),
            json.loads(row["catalog"]),
            row["created"],
            json.loads(row["derived"]),
        )

    def events_after(self, space: str, seq: int) -> Iterator[LogEvent]:
        cur = self._reader().execute(
            "SELECT * FROM events WHERE space = ? AND seq > ? ORDER BY seq", (space, seq)
        )
        for row in cur:
            yield _row_event(row)

    def get_decision(self, event_id: str) -> Decision | None:
        row = self._reader().execute("SELECT * FROM decisions WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else _row_decision(row)

    def closure(self, event_id: str) -> Closure | None:
        return self._closure(self._reader(), event_id)

    @staticmethod
    def _closure(conn: sqlite3.Connection, event_id: str | None) -> Closure | None:
        row = conn.execute("SELECT kind, reward FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else Closure(str(row["kind"]), float(row["reward"]))

    def observations(self, space: str, event_ids: list[str]) -> dict[str, list[Observation]]:
        del space  # event ids are unique across spaces here (one table)
        out: dict[str, list[Observation]] = {eid: [] for eid in event_ids}
        conn = self._reader()
        try:
            for start in range(0, len(event_ids), 500):  # SQLite's limit on bound parameters
                chunk = event_ids[start : start + 500]
                cur = conn.execute(
                    f"SELECT * FROM observations WHERE event_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY event_id, n",
                    chunk,
                )
                for row in cur:
                    out[row["event_id"]].append(_row_observation(row))
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot read observations: {e}") from None
        return out

    def selection_counts(self, space: str) -> dict[str, int]:
        try:
            cur = self._reader().execute("SELECT model_id, n FROM selections WHERE space = ?", (space,))
            return {str(row["model_id"]): int(row["n"]) for row in cur}
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot read the selection counts: {e}") from None

    def open_decisions(self, space: str, since: float) -> Iterator[Decision]:
        cur = self._reader().execute(
            "SELECT d.* FROM decisions d WHERE d.space = ? AND d.deadline > ? "
            "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = d.event_id) ORDER BY d.deadline",
            (space, since),
        )
        for row in cur:
            yield _row_decision(row)

    def purge_decisions(self, before: float) -> int:
        # A short-lived connection of its own: SQLite's busy timeout serializes it with the writer.
        try:
            conn = self._connect()
            try:
                cur = conn.execute("DELETE FROM decisions WHERE deadline < ?", (before,))
                # An observation is made before its decision's deadline: older ones belong to purged ones.
                conn.execute("DELETE FROM observations WHERE created < ?", (before,))
                return cur.rowcount
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot purge old decisions: {e}") from None

    def decision_log(self, space: str) -> Iterator[tuple[Decision, float | None]]:
        cur = self._reader().execute(
            "SELECT d.*, e.reward AS reward FROM decisions d LEFT JOIN events e ON e.event_id = d.event_id "
            "AND e.kind IN ('feedback', 'default_reward') WHERE d.space = ? ORDER BY d.created",
            (space,),
        )
        for row in cur:
            yield _row_decision(row), row["reward"]
