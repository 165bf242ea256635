"""The scale-out store: one Redis server shared by several replicas.

Layout: every key of a space starts with ``edgesel:{<space>}:`` (the space name as is, in braces: Redis
Cluster's hash tag, so all of a space's keys hash to one slot and every script and multi-key command below
touches one slot; docs/redis.md). Below, ``<kind>`` stands for ``edgesel:{<space>}:<kind>``.

- ``log``: a Stream, the space's ordered durable log. Entry ids are ``0-<seq>`` where ``seq`` is a
  dense per-space counter (``seq``, INCR'd by the same Lua script as the XADD). So the interface's
  integer seq *is* the stream id, ``events_after(seq)`` is ``XRANGE 0-<seq+1> +``, and a gap (an entry
  trimmed before this replica applied it) shows as a jump in seq.
- ``fb:<event_id>``: the exactly-once claim of a feedback or default reward, ``"<kind> <reward> <seq>"``.
  The append script checks it first (an existing claim returns "duplicate" and appends nothing), then
  INCR + XADD + ``SET PX``, all atomically; it is kept ``retention_s`` (the server's decision_retention_s).
- ``models``: hash model id -> ``"add_model <seq>"``, the claim of an AddModel, so replicas starting
  together on an empty Redis add each configured model once.
- ``dec:<event_id>``: a pending decision (JSON, context vector as base64 little-endian f64) whose TTL is the
  rest of its reward window + ``decision_margin_s`` (so a late Feedback hears "expired", not "unknown");
  ``decidx``: sorted set event id by deadline, for ``open_decisions``; ``sel``: hash model
  id -> selections, counted by the same script that writes the decision (once, even if a batch is retried).
  An event id does not name its space: a Feedback's decision is looked up in each space the replica serves.
- ``obs:<event_id>``: the Feedbacks recorded for a decision of a space that aggregates rewards, a hash
  request key -> ``"<n> <reward> <record json>"`` (n: its place, 1, 2, ...), written by a script that first
  checks the decision's claim (none: still open) and the key (a retry); it lives as long as the decision.
  The close is appended by a script that checks the claim and that the hash still has the number of entries
  the aggregate was computed from, so no Feedback is recorded after the close and none is left out of it.
- ``act:<event_id>``: when a deferred decision was activated, ``"<activated> <deadline>"``; written once
  (later Activates read it) by the script that also moves its deadline in ``decidx``, extends the
  decision's TTL to the new window and counts its selection (a deferred decision is counted only then).
- ``snap:<seq>``: a snapshot (hash: state, catalog, created); ``snaps``: sorted set of their
  seqs; the newest ``SNAPSHOTS_KEPT`` are kept.
- ``pos``: sorted set replica id -> the seq that replica has applied (or is about to load from);
  ``alive:<replica>``: its heartbeat (TTL). The log is trimmed (``XTRIM MINID``) only below
  ``min(newest snapshot, positions of live replicas)``, so neither a live replica nor one loading a
  snapshot can miss an entry.

Releases before the hash tags named these ``edgesel:log:<space>``, ``edgesel:dec:<event_id>``, ...: the first
replica of this release to load a space moves its keys to this layout in one atomic script (MIGRATE_LUA);
old and new replicas must not run side by side across that change (the new one refuses to start then).

Threads: a writer thread sends whatever has queued up as one pipeline (decisions + appends; group commit).
A tailer thread ``XREAD BLOCK``s every space's stream and applies what it read in stream order, in bulk
(``apply_batch``: the raw reply decoded at once, hiredis-parsed); the future of an append resolves only when
the XADD succeeded *and* this replica's tailer applied it, so an ack means durable (Redis with AOF
``appendfsync always`` replies after the fsync) and in the local state.
Every replica applies every entry, so all converge to the same state at a given seq. If Redis goes away,
appends fail with StoreUnavailable (never a false ack), decisions are kept in memory only by the engine,
and the tailer reconnects with backoff and catches up.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from edgesel_server._core import log_page_columns
from edgesel_server.errors import UnknownEvent
from edgesel_server.gc_pause import gc_paused
from edgesel_server.store.base import (
    ADD_MODEL,
    BATCH_MAX,
    MAX_OBSERVATIONS,
    NO_FEEDBACK,
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

PREFIX = "edgesel:"
SNAPSHOTS_KEPT = 3
READ_COUNT = 1000
# Stream entries per XREAD/XRANGE of the log: decoded and applied as one batch (bulk apply).
LOG_READ_COUNT = 4 * BATCH_MAX
BLOCK_MS = 250  # also how long a space registered for tailing may wait before its first read
# An appended event not applied here within this fails with StoreUnavailable (a retry then hears DUPLICATE).
APPLY_TIMEOUT_S = 10.0
DOWN_HOLD_S = 0.5  # after a connection error, fail writes fast for this long (the tailer probes meanwhile)
HEARTBEAT_S = 1.0
ALIVE_TTL_MS = 30_000
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
DECISION_MARGIN_S = 600.0
RETENTION_S = 7 * 24 * 3600.0

# Append one event; claim first. KEYS: log, seq counter, claim key (string for events, hash for models).
# ARGV: claim mode ("", "event", "model"), claim ttl ms (event) or model id (model), the claim's text (seq is
# appended to it), field/value pairs.
# The OOM check happens at the first write (INCR): after it, the script runs to the end, so an entry is
# never appended without its claim and the seq counter never skips.
APPEND_LUA = """
local mode = ARGV[1]
if mode == 'event' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return {0, prev} end
elseif mode == 'model' then
  local prev = redis.call('HGET', KEYS[3], ARGV[2])
  if prev then return {0, prev} end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], string.format('0-%d', seq), unpack(ARGV, 4))
local claim = ARGV[3] .. ' ' .. string.format('%d', seq)
if mode == 'event' then
  redis.call('SET', KEYS[3], claim, 'PX', ARGV[2])
elseif mode == 'model' then
  redis.call('HSET', KEYS[3], ARGV[2], claim)
end
return {1, seq}
"""


# Write one decision unless it is there already (a batch retried after a lost reply), and count the
# selection with it. KEYS: decision, deadline index, selection counts. ARGV: json, ttl ms, event id,
# deadline, model id.
DECISION_LUA = """
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
if ARGV[6] ~= '1' then redis.call('HINCRBY', KEYS[3], ARGV[5], 1) end
return 1
"""
# (ARGV[6] '1': a deferred decision, counted when it is activated.)

# Record one observation. KEYS: claim, observations. ARGV: request key, reward, record, ttl ms, most.
# Returns {1, n}, {0, claim} once closed, {2, existing entry} for a retry, {3, n} beyond the most.
OBSERVATION_LUA = """
local prev = redis.call('GET', KEYS[1])
if prev then return {0, prev} end
local have = redis.call('HGET', KEYS[2], ARGV[1])
if have then return {2, have} end
local n = redis.call('HLEN', KEYS[2]) + 1
if n > tonumber(ARGV[5]) then return {3, n} end
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', n) .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, n}
"""

# Append the close of an aggregating decision. KEYS: log, seq counter, claim, observations. ARGV: claim ttl
# ms, the claim's text, the number of observations it was computed from, field/value pairs.
# Returns {1, seq}, {0, claim} when closed already, {2, n} when the observations changed (nothing written).
CLOSE_LUA = """
local prev = redis.call('GET', KEYS[3])
if prev then return {0, prev} end
local n = redis.call('HLEN', KEYS[4])
if n ~= tonumber(ARGV[3]) then return {2, n} end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], string.format('0-%d', seq), unpack(ARGV, 4))
redis.call('SET', KEYS[3], ARGV[2] .. ' ' .. string.format('%d', seq), 'PX', ARGV[1])
return {1, seq}
"""

# Activate a deferred decision. KEYS: decision, activation, deadline index, selection counts. ARGV:
# "<activated> <deadline>", ttl ms, event id, deadline, model id. Returns {1, text}, {2, earlier text}, or
# {0, ''} when the decision is gone.
ACTIVATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local prev = redis.call('GET', KEYS[2])
if prev then return {2, prev} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
return {1, ARGV[1]}
"""


def _skey(space: str, kind: str, *rest: str) -> str:
    """A key of a space: ``edgesel:{<space>}:<kind>[:<rest>...]``. The braces are Redis Cluster's hash tag:
    every key of a space hashes to one slot, so the scripts and multi-key reads touching them are valid on a
    cluster too."""
    return f"{PREFIX}{{{space}}}:" + ":".join((kind, *rest))


# Moves one space's keys from the legacy layout (no hash tags) to today's, atomically and once: the first
# replica of the new release to load the space does it (later ones find nothing to move). Legacy layouts only
# exist on a single Redis (their scripts were never cluster-safe), where a script may name keys it computes.
# Decisions and their claims are found through the space's decision index; a claim of a decision no longer
# indexed is left to expire (no Feedback can reach it: its decision has expired). Returns the number of keys
# moved, or -1 if the space has keys under both layouts (an old replica still writing: refused).
# ARGV: the space, the legacy prefix, the new prefix.
MIGRATE_LUA = """
local sp, old, new = ARGV[1], ARGV[2], ARGV[3]
local kinds = {'log', 'seq', 'models', 'decidx', 'sel', 'snaps', 'pos'}
local any_old = false
for _, k in ipairs(kinds) do
  if redis.call('EXISTS', old .. k .. ':' .. sp) == 1 then any_old = true end
end
if not any_old then return 0 end
if redis.call('EXISTS', new .. 'seq') == 1 or redis.call('EXISTS', new .. 'log') == 1 then return -1 end
local moved = 0
local function mv(a, b)
  if redis.call('EXISTS', a) == 1 then
    redis.call('RENAME', a, b)
    moved = moved + 1
  end
end
for _, k in ipairs(kinds) do mv(old .. k .. ':' .. sp, new .. k) end
for _, s in ipairs(redis.call('ZRANGE', new .. 'snaps', 0, -1)) do
  mv(old .. 'snap:' .. sp .. ':' .. s, new .. 'snap:' .. s)
end
for _, e in ipairs(redis.call('ZRANGE', new .. 'decidx', 0, -1)) do
  mv(old .. 'dec:' .. e, new .. 'dec:' .. e)
  mv(old .. 'fb:' .. e, new .. 'fb:' .. e)
end
return moved
"""


def _x_bytes(x: np.ndarray | None) -> bytes:
    return b"" if x is None else np.ascontiguousarray(x, dtype="<f8").tobytes()


def _seq_of(stream_id: bytes | str) -> int:
    if stream_id[:2] == b"0-" and stream_id[2:].isdigit():  # edgesel's ids: "0-<seq>" (the fast case)
        return int(stream_id[2:])
    s = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, n = s.partition("-")
    if ms != "0":
        raise ValueError(f"unexpected stream id {s!r} (not written by edgesel)")
    return int(n)


def _event_fields(e: LogEvent) -> list[bytes | str]:
    return [
        "k",
        e.kind,
        "e",
        e.event_id or "",
        "m",
        e.model_id,
        "x",
        b"\x00" if e.x is None else b"\x01" + _x_bytes(e.x),
        "r",
        repr(float(e.reward)),
        "p",
        e.payload,
        "c",
        repr(float(e.created or time.time())),
    ]


# The field names of a log entry in the order _event_fields writes them.
FIELD_NAMES = [b"k", b"e", b"m", b"x", b"r", b"p", b"c"]


def _raw_reply(response: Any, **_options: Any) -> Any:
    """XRANGE/XREAD replies as the parser (hiredis) built them, nested lists, without redis-py turning every
    entry into a dict first: the log's entries are decoded in bulk by _decode_entries."""
    return response


def _xs_of(blobs: Sequence[bytes]) -> list[np.ndarray | None]:
    """The x vectors of entries from their blobs: one read-only matrix when all have one length (they do: one
    space, one device schema), each x a row of it, the same float64 values a per-entry np.frombuffer gives."""
    width = len(blobs[0]) if blobs else 0
    if width > 1 and (width - 1) % 8 == 0 and all(len(b) == width and b[0] == 1 for b in blobs):
        raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), width)[:, 1:]
        matrix = np.ascontiguousarray(raw).view("<f8")
        matrix.flags.writeable = False
        return list(matrix)
    return [np.frombuffer(b, dtype="<f8", offset=1) if b[:1] == b"\x01" else None for b in blobs]


class _Page:
    """A raw XRANGE/XREAD reply's entries: their seqs at once, their events decoded in bulk on demand.

    Every replica decodes every entry of the log, and an entry is ~17 Python objects, so the fields of a page
    are read in Rust (`_core.log_page_columns`: one column per field, ~0.2 us per entry) and the events made
    by one `map` over the columns; a page with any entry not in edgesel's canonical form (another field
    order, a number not written by repr) is read entry by entry by `_decode_entries`, as it always was."""

    def __init__(self, space: str, entries: list) -> None:
        self.space, self.entries = space, entries
        self.columns = log_page_columns(entries)
        self.seqs = self.columns[0] if self.columns is not None else [_seq_of(i) for i, _ in entries]

    def run_end(self, start: int, first: int) -> int:
        """The end of the run of consecutive seqs first, first + 1, ... that begins at entry `start`."""
        stop = start
        while stop < len(self.seqs) and self.seqs[stop] == first + (stop - start):
            stop += 1
        return stop

    def events(self, start: int = 0, stop: int | None = None) -> list[LogEvent]:
        """The events of entries [start, stop), in order."""
        if self.columns is None:
            picked = self.entries[start:stop]
            return _decode_entries(
                self.space, [(n, flat) for n, (_, flat) in zip(self.seqs[start:stop], picked, strict=True)]
            )
        seqs, kinds, eids, mids, blobs, rewards, payloads, created = self.columns
        at = slice(start, stop)
        xs = _xs_of(blobs[at])
        return list(
            map(LogEvent, repeat(self.space), kinds[at], eids[at], mids[at], xs, rewards[at], payloads[at],
                created[at], seqs[at])
        )  # fmt: skip


def _decode_entries(space: str, numbered: list[tuple[int, list[bytes]]]) -> list[LogEvent]:
    """Log entries from their (seq, flat field/value list) pairs (raw XRANGE/XREAD entries), in order. Every
    entry is one Python object per field, so this is per-event work on every replica: the fields are unpacked
    positionally (by name only for an entry not in _event_fields' order) and the x blobs of all entries are
    read as one matrix when they have one length (they do: one space, one device schema), each event's x a
    read-only row of it, the same float64 values a per-entry np.frombuffer gives."""
    fields = []
    for _, flat in numbered:
        if flat[0::2] == FIELD_NAMES:
            fields.append(flat[1::2])
        else:
            f = dict(zip(flat[0::2], flat[1::2], strict=True))
            fields.append([f[name] for name in FIELD_NAMES])
    xs = _xs_of([v[3] for v in fields])
    return [
        LogEvent(space, k.decode(), e.decode() or None, m.decode(), x, float(r), payload, float(c), seq)
        for (seq, _), (k, e, m, _, r, payload, c), x in zip(numbered, fields, xs, strict=True)
    ]


def _decision_json(d: Decision) -> str:
    return json.dumps(
        {
            "event_id": d.event_id,
            "space": d.space,
            "model_id": d.model_id,
            "x": base64.b64encode(_x_bytes(d.x)).decode(),
            "created": d.created,
            "deadline": d.deadline,
            "propensity": d.propensity,
            "expected_qoe": d.expected_qoe,
            "bonus": d.bonus,
            "policy_version": d.policy_version,
            "eligible": d.eligible,
            "prefs": d.prefs,
            "owner": d.owner,
            "group": d.group,
            "device_class": d.device_class,
            **({"deferred": True} if d.deferred else {}),
        },
        separators=(",", ":"),
    )


def _decision_from_json(raw: bytes, activation: bytes | None = None) -> Decision:
    """`activation`: the decision's ``act:`` text, if it was activated."""
    d = json.loads(raw)
    d["x"] = np.frombuffer(base64.b64decode(d["x"]), dtype="<f8").copy()
    decision = Decision(**d)
    if activation is not None:
        decision.activated, decision.deadline = _activation_times(activation)
    return decision


def _activation_times(raw: bytes | str) -> tuple[float, float]:
    activated, deadline = (raw.decode() if isinstance(raw, bytes) else raw).split()
    return float(activated), float(deadline)


def _observation(event_id: str, key: bytes | str, entry: bytes | str) -> Observation:
    n, reward, record = (entry.decode() if isinstance(entry, bytes) else entry).split(" ", 2)
    k = key.decode() if isinstance(key, bytes) else key
    return Observation.from_record(event_id, k, float(reward), int(n), record)


def _claim_closure(raw: bytes | str) -> Closure:
    """A claim's text is "<kind> <reward> <seq>"."""
    kind, reward, _seq = (raw.decode() if isinstance(raw, bytes) else raw).split()
    return Closure(kind, float(reward))


def _exit_process(msg: str) -> None:
    log.critical("%s; exiting so that a restart rebuilds this replica from the latest snapshot", msg)
    logging.shutdown()
    os._exit(70)


class RedisStore(Store):
    shared = True

    def __init__(
        self,
        url: str,
        data_dir: Path | str | None = None,
        *,
        retention_s: float = RETENTION_S,
        decision_margin_s: float = DECISION_MARGIN_S,
        on_fatal: Callable[[str], None] = _exit_process,
        commit_delay_s: float = 0.0,
    ) -> None:
        self.url = url
        self.data_dir = data_dir  # unused: everything lives in Redis
        self.retention_ms = max(1000, int(retention_s * 1000))
        self.decision_margin_s = decision_margin_s
        self.on_fatal = on_fatal
        self.replica_id = secrets.token_hex(8)
        opts: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_keepalive": True}
        # Reads are idempotent: one retry hides a pooled connection that went stale across a Redis restart.
        self._r: Any = redis.Redis.from_url(url, socket_timeout=5.0, retry=Retry(NoBackoff(), 1), **opts)
        # Appends are not retried blindly: a lost reply surfaces as StoreUnavailable, a retry as DUPLICATE.
        self._w: Any = redis.Redis.from_url(url, socket_timeout=5.0, retry=Retry(NoBackoff(), 0), **opts)
        self._t: Any = redis.Redis.from_url(
            url, socket_timeout=BLOCK_MS / 1000 + 5.0, retry=Retry(NoBackoff(), 0), **opts
        )
        self._append_sha = ""
        self._decision_sha = ""
        self._observation_sha = ""
        self._close_sha = ""
        self._activate_sha = ""
        self._writes = WriteQueue(commit_delay_s=commit_delay_s)
        self._apply: ApplyFn | None = None
        self._apply_batch: BatchApplyFn | None = None
        self._lock = threading.Lock()
        self._applied: dict[str, int] = {}  # spaces being tailed -> last seq applied here
        self._loading: dict[str, int] = {}  # spaces being loaded -> the seq their replay starts after
        self._waiters: dict[str, dict[int, tuple[Future, float]]] = {}
        # get_decision reads the claim too: the engine asks closure() right after (one round trip).
        self._claims_seen: dict[str, bytes | None] = {}
        self._migrated: set[str] = set()  # spaces whose legacy keys (if any) were moved to today's layout
        self._down_until = 0.0
        self._reconnects = 0  # bumped by the tailer each time Redis is back
        self._writer_reconnects = 0
        self._closed = False
        self._fatal = ""  # set when this replica's state can no longer follow the log
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._tailer: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self, apply: ApplyFn, apply_batch: BatchApplyFn | None = None) -> None:
        self._apply = apply
        self._apply_batch = apply_batch
        # The log is read raw and decoded in bulk (_decode_entries); nothing else reads streams.
        self._r.set_response_callback("XRANGE", _raw_reply)
        self._t.set_response_callback("XREAD", _raw_reply)
        try:
            self._load_scripts(self._r)
        except RedisError as e:
            raise StoreUnavailable(f"cannot reach redis at {self.url}: {e}") from e
        self._writer = threading.Thread(target=self._write_loop, name="edgesel-redis-writer", daemon=True)
        self._tailer = threading.Thread(target=self._tail_loop, name="edgesel-redis-tailer", daemon=True)
        self._writer.start()
        self._tailer.start()
        log.info("redis store open", extra={"url": self.url, "replica": self.replica_id})

    def _load_scripts(self, client: Any) -> None:
        self._append_sha = str(client.script_load(APPEND_LUA))
        self._decision_sha = str(client.script_load(DECISION_LUA))
        self._observation_sha = str(client.script_load(OBSERVATION_LUA))
        self._close_sha = str(client.script_load(CLOSE_LUA))
        self._activate_sha = str(client.script_load(ACTIVATE_LUA))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writes.close()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self._stop.set()
        if self._tailer is not None:
            self._tailer.join(timeout=30)
        self._fail_waiters(lambda _age: True, "the store is closed")
        try:
            pipe = self._r.pipeline(transaction=False)
            for space in self._applied:
                pipe.zrem(_skey(space, "pos"), self.replica_id)
                pipe.delete(_skey(space, "alive", self.replica_id))
            pipe.execute()
        except RedisError:
            pass
        for client in (self._r, self._w, self._t):
            client.close()

    # -- writes ------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._writes.next_batch()
            if not batch:
                continue
            try:
                self._commit(batch)
            except Exception as e:  # a bug must not wedge the writer or leave callers waiting
                log.exception("redis write failed unexpectedly")
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StoreUnavailable(f"the store cannot write: {e}"))

    def _append_call(self, pipe: Any, e: LogEvent) -> None:
        keys = [_skey(e.space, "log"), _skey(e.space, "seq")]
        if e.event_id:
            keys.append(_skey(e.space, "fb", e.event_id))
            head: list[Any] = ["event", self.retention_ms, f"{e.kind} {float(e.reward)!r}"]
        elif e.kind == ADD_MODEL:
            keys.append(_skey(e.space, "models"))
            head = ["model", e.model_id, e.kind]
        else:
            keys.append(keys[0])
            head = ["", "", e.kind]
        pipe.evalsha(self._append_sha, len(keys), *keys, *head, *_event_fields(e))

    def _commit(self, batch: list[tuple]) -> None:
        if self._fatal or time.monotonic() < self._down_until:
            err = StoreUnavailable(self._fatal or f"redis at {self.url} is unreachable")
            for _, _, fut in batch:
                fut.set_exception(err)
            return
        if self._writer_reconnects != self._reconnects:
            # Redis came back: drop pooled connections to the old process instead of failing on them.
            self._writer_reconnects = self._reconnects
            self._w.connection_pool.disconnect()
        now = time.time()
        todo = batch
        for _attempt in range(2):  # a second round only for scripts Redis forgot (it restarted)
            pipe = self._w.pipeline(transaction=False)
            for kind, obj, _ in todo:
                if kind == "decision":
                    ttl_ms = int(max(1.0, obj.deadline - now + self.decision_margin_s) * 1000)
                    sp = obj.space
                    keys = [_skey(sp, "dec", obj.event_id), _skey(sp, "decidx"), _skey(sp, "sel")]
                    args = [_decision_json(obj), ttl_ms, obj.event_id, repr(obj.deadline), obj.model_id]
                    pipe.evalsha(self._decision_sha, len(keys), *keys, *args, "1" if obj.deferred else "0")
                elif kind == "observation":
                    o, deadline, sp = obj
                    ttl_ms = int(max(1.0, deadline - now + self.decision_margin_s) * 1000)
                    keys = [_skey(sp, "fb", o.event_id), _skey(sp, "obs", o.event_id)]
                    args = [o.key, repr(float(o.reward)), o.record_json(), ttl_ms, MAX_OBSERVATIONS]
                    pipe.evalsha(self._observation_sha, len(keys), *keys, *args)
                elif kind == "close":
                    e, expected = obj
                    sp = e.space
                    keys = [_skey(sp, "log"), _skey(sp, "seq"), _skey(sp, "fb", e.event_id)]
                    keys.append(_skey(sp, "obs", e.event_id))
                    head = [self.retention_ms, f"{e.kind} {float(e.reward)!r}", expected]
                    pipe.evalsha(self._close_sha, len(keys), *keys, *head, *_event_fields(e))
                elif kind == "activate":
                    d, activated, deadline = obj
                    ttl_ms = int(max(1.0, deadline - now + self.decision_margin_s) * 1000)
                    sp = d.space
                    keys = [_skey(sp, "dec", d.event_id), _skey(sp, "act", d.event_id)]
                    keys += [_skey(sp, "decidx"), _skey(sp, "sel")]
                    args = [f"{activated!r} {deadline!r}", ttl_ms, d.event_id, repr(deadline), d.model_id]
                    pipe.evalsha(self._activate_sha, len(keys), *keys, *args)
                else:
                    self._append_call(pipe, obj)
            try:
                results = pipe.execute(raise_on_error=False)
            except RedisError as e:
                self._down_until = time.monotonic() + DOWN_HOLD_S
                log.error("redis write failed, %d request(s) not acknowledged: %s", len(todo), e)
                err = StoreUnavailable(f"the store cannot write: {e}")
                for _, _, fut in todo:
                    fut.set_exception(err)
                return
            self._down_until = 0.0
            retry: list[tuple] = []
            for item, res in zip(todo, results, strict=True):
                kind, obj, fut = item
                if isinstance(res, NoScriptError):
                    retry.append(item)
                elif isinstance(res, Exception):
                    fut.set_exception(StoreUnavailable(f"the store cannot write: {res}"))
                elif kind == "decision":
                    fut.set_result(None)
                elif kind in ("observation", "close", "activate"):
                    self._resolve_special(kind, obj, res, fut)
                elif int(res[0]) == 1:
                    self._await_apply(obj.space, int(res[1]), fut)
                elif obj.kind == ADD_MODEL:  # already added (by another replica): done once it is applied
                    self._await_apply(obj.space, int(res[1].split()[-1]), fut)
                else:
                    fut.set_exception(DuplicateEvent(obj.event_id, _claim_closure(res[1])))
            if not retry:
                return
            try:
                self._load_scripts(self._w)
            except RedisError as e:
                for _, _, fut in retry:
                    fut.set_exception(StoreUnavailable(f"the store cannot write: {e}"))
                return
            todo = retry
        for _, _, fut in todo:
            fut.set_exception(StoreUnavailable("redis keeps forgetting the append script"))

    def _resolve_special(self, kind: str, obj: Any, res: list, fut: Future) -> None:
        """The answer of an observation, close or activation script (see their comments)."""
        status = int(res[0])
        if kind == "observation":
            o = obj[0]
            if status == 1:
                fut.set_result(int(res[1]))
            elif status == 0:
                fut.set_exception(DuplicateEvent(o.event_id, _claim_closure(res[1])))
            elif status == 2:
                fut.set_exception(DuplicateObservation(_observation(o.event_id, o.key, res[1])))
            else:
                fut.set_exception(TooManyObservations(o.event_id))
        elif kind == "close":
            e, expected = obj
            if status == 1:
                self._await_apply(e.space, int(res[1]), fut)
            elif status == 0:
                fut.set_exception(DuplicateEvent(e.event_id, _claim_closure(res[1])))
            else:
                fut.set_exception(StaleClose(expected, int(res[1])))
        elif status == 0:
            fut.set_exception(UnknownEvent(f"unknown event id {obj[0].event_id!r}", field="event_id"))
        else:
            activated, deadline = _activation_times(res[1])
            fut.set_result(Activation(activated, deadline, fresh=status == 1))

    def _await_apply(self, space: str, seq: int, fut: Future) -> None:
        with self._lock:
            if self._applied.get(space, -1) < seq:
                self._waiters.setdefault(space, {})[seq] = (fut, time.monotonic())
                return
        fut.set_result(seq)

    def _fail_waiters(self, pred: Callable[[float], bool], why: str) -> None:
        now = time.monotonic()
        failed: list[Future] = []
        with self._lock:
            for waiters in self._waiters.values():
                for seq, (fut, since) in list(waiters.items()):
                    if pred(now - since):
                        failed.append(fut)
                        del waiters[seq]
        for fut in failed:
            if not fut.done():
                fut.set_exception(StoreUnavailable(why))

    def save_snapshot(self, snap: Snapshot) -> None:
        space = snap.space
        index = _skey(space, "snaps")
        try:
            newest = self._r.zrevrange(index, 0, 0, withscores=True)
            if not newest or int(newest[0][1]) < snap.seq:
                pipe = self._r.pipeline(transaction=True)
                pipe.hset(
                    _skey(space, "snap", str(snap.seq)),
                    mapping={
                        "state": snap.state,
                        "catalog": json.dumps(snap.catalog),
                        "created": repr(snap.created),
                        "derived": json.dumps(snap.derived),
                    },
                )
                pipe.zadd(index, {str(snap.seq): snap.seq})
                pipe.execute()
                old = self._r.zrange(index, 0, -(SNAPSHOTS_KEPT + 1))
                if old:
                    pipe = self._r.pipeline(transaction=True)
                    pipe.delete(*[_skey(space, "snap", m.decode()) for m in old])
                    pipe.zrem(index, *old)
                    pipe.execute()
            self._trim(space)
        except RedisError as e:
            raise StoreUnavailable(f"the store cannot write a snapshot: {e}") from e

    def _trim(self, space: str) -> None:
        """Drop log entries that the newest snapshot covers and every live replica has applied."""
        newest = self._r.zrevrange(_skey(space, "snaps"), 0, 0, withscores=True)
        if not newest:
            return
        upto = int(newest[0][1])
        pos_key = _skey(space, "pos")
        positions = self._r.zrange(pos_key, 0, -1, withscores=True)
        if positions:
            alive = self._r.mget([_skey(space, "alive", m.decode()) for m, _ in positions])
            # Heartbeats expire while Redis is down too: right after a restart, wait for them to come back.
            if int(self._r.info("server")["uptime_in_seconds"]) * 1000 < 2 * ALIVE_TTL_MS:
                alive = [b"1"] * len(positions)
            dead = [m for (m, _), a in zip(positions, alive, strict=True) if a is None]
            if dead:
                self._r.zrem(pos_key, *dead)
            live = [int(s) for (_, s), a in zip(positions, alive, strict=True) if a is not None]
            if live:
                upto = min(upto, *live)
        if upto > 0:
            self._r.xtrim(_skey(space, "log"), minid=f"0-{upto + 1}", approximate=True)

    # -- the tailer --------------------------------------------------------------------------------
    def _tail_loop(self) -> None:
        backoff = BACKOFF_MIN_S
        connected = True
        last_beat = 0.0
        behind = False
        while not self._stop.is_set() and not self._fatal:
            try:
                if not connected:
                    self._t.ping()
                    self._check_not_behind()
                    connected = True
                    self._reconnects += 1
                    self._down_until = 0.0
                    backoff = BACKOFF_MIN_S
                    log.warning("redis reachable again; catching up", extra={"url": self.url})
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self._fail_waiters(lambda age: age > APPLY_TIMEOUT_S, "appended but not yet applied here")
                with self._lock:
                    applied = dict(self._applied)
                if not applied:
                    self._stop.wait(BLOCK_MS / 1000)
                    continue
                space_of = {_skey(s, "log").encode(): s for s in applied}
                streams = {_skey(s, "log"): f"0-{seq}" for s, seq in applied.items()}
                # Behind (the last read filled a page): this read returns at once, and its decoding runs
                # with the GC paused (gc_pause.py); caught up, it may block, and the GC keeps running.
                with gc_paused(behind):
                    resp = self._t.xread(streams, count=LOG_READ_COUNT, block=BLOCK_MS)
                    # RESP3 (redis-py >= 8 by default) answers a map, RESP2 a list of [key, entries].
                    # Decoded first, the raw reply dropped, then applied (see event_batches_after).
                    pages = list(resp.items() if isinstance(resp, dict) else resp or [])
                    behind = any(len(entries) >= LOG_READ_COUNT for _, entries in pages)
                    new = [
                        (space_of[key], *self._new_events(space_of[key], entries)) for key, entries in pages
                    ]
                    del resp, pages
                for space, events, gap in new:
                    self._apply_new(space, events, gap)
            except RedisError as e:
                if connected:
                    log.error("lost redis; reconnecting", extra={"url": self.url, "error": str(e)})
                    connected = False
                self._down_until = time.monotonic() + DOWN_HOLD_S
                self._t.connection_pool.disconnect()
                self._fail_waiters(lambda age: age > APPLY_TIMEOUT_S, "appended but not yet applied here")
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    def _new_events(self, space: str, entries: list) -> tuple[list[LogEvent], str]:
        """A raw XREAD reply's entries this replica has not applied yet, decoded, and the gap that ends them
        ("" if none: entries trimmed before this replica applied them)."""
        with self._lock:
            expect = self._applied[space] + 1
        page = _Page(space, entries)
        seqs = page.seqs
        start = 0
        while start < len(seqs) and seqs[start] < expect:  # a stream's ids increase: applied ones come first
            start += 1
        stop, gap = page.run_end(start, expect), ""
        if stop < len(seqs):
            gap = (
                f"space {space!r}: the log jumps from seq {expect + (stop - start) - 1} to {seqs[stop]}; the "
                "entries between were trimmed before this replica applied them"
            )
        return page.events(start, stop), gap

    def _apply_new(self, space: str, events: list[LogEvent], gap: str) -> None:
        """Apply new events as one batch, in order; then resolve the appends waiting for them. A gap is
        fatal, after applying what came before it."""
        if events:
            self._apply_decoded(events)
            upto = events[-1].seq
            with self._lock:
                self._applied[space] = upto
                waiters = self._waiters.get(space, {})
                done = [waiters.pop(n)[0] for n in [n for n in waiters if n <= upto]]
            for fut in done:
                if not fut.done():
                    fut.set_result(upto)
        if gap:
            self._die(gap)

    def _apply_decoded(self, events: list[LogEvent]) -> None:
        assert self._apply is not None
        if self._apply_batch is not None:
            try:
                self._apply_batch(events)
            except Exception:  # a bug here must not wedge the tailer; the events are durable and replay
                log.exception("applying events seq=%d-%d of space %s failed", events[0].seq, events[-1].seq,
                              events[0].space)  # fmt: skip
            return
        for e in events:
            try:
                self._apply(e)
            except Exception:  # a bug here must not wedge the tailer; the event is durable and replays
                log.exception("applying event seq=%d of space %s failed", e.seq, e.space)

    def _migrate_legacy_keys(self, space: str) -> None:
        """Today's key layout for a space a release before the hash tags wrote (MIGRATE_LUA), once."""
        if space in self._migrated:
            return
        moved = int(self._r.eval(MIGRATE_LUA, 0, space, PREFIX, _skey(space, "")))  # "edgesel:{<space>}:"
        if moved < 0:
            raise StoreUnavailable(
                f"space {space!r} has keys under both the legacy layout (edgesel:log:{space}, ...) and "
                f"today's (edgesel:{{{space}}}:log, ...): a replica of an older release still writes; stop "
                "every old replica, then start this one"
            )
        if moved:
            log.warning("redis keys moved to the cluster-safe layout", extra={"space": space, "keys": moved})
        self._migrated.add(space)

    def _check_not_behind(self) -> None:
        with self._lock:
            spaces = dict(self._applied)
        if not spaces:
            return
        pipe = self._t.pipeline(transaction=False)  # one GET per space: their keys are in different slots
        for s in spaces:
            pipe.get(_skey(s, "seq"))
        counters = pipe.execute()
        for (space, applied), c in zip(spaces.items(), counters, strict=True):
            if int(c or 0) < applied:
                self._die(
                    f"space {space!r}: redis's log ends at seq {int(c or 0)} but this replica has applied "
                    f"{applied}: redis lost data"
                )

    def _die(self, msg: str) -> None:
        self._fatal = msg
        self._fail_waiters(lambda _age: True, msg)
        self.on_fatal(msg)

    def _heartbeat(self) -> None:
        with self._lock:
            positions = {**self._loading, **self._applied}
        pipe = self._t.pipeline(transaction=False)
        for space, seq in positions.items():
            pipe.set(_skey(space, "alive", self.replica_id), b"1", px=ALIVE_TTL_MS)
            pipe.zadd(_skey(space, "pos"), {self.replica_id: seq})
            # Index entries whose decision has certainly expired.
            pipe.zremrangebyscore(_skey(space, "decidx"), "-inf", time.time() - self.decision_margin_s)
        pipe.execute()

    # -- reads -------------------------------------------------------------------------------------
    def latest_snapshot(self, space: str) -> Snapshot | None:
        try:
            # Hold trimming back before looking: a snapshot written meanwhile can trim only what it covers.
            self._migrate_legacy_keys(space)
            with self._lock:
                self._loading[space] = 0
            pipe = self._r.pipeline(transaction=False)
            pipe.set(_skey(space, "alive", self.replica_id), b"1", px=ALIVE_TTL_MS)
            pipe.zadd(_skey(space, "pos"), {self.replica_id: 0})
            pipe.execute()
            newest = self._r.zrevrange(_skey(space, "snaps"), 0, 0)
            if not newest:
                return None
            seq = int(newest[0])
            h = self._r.hgetall(_skey(space, "snap", str(seq)))
        except RedisError as e:
            raise StoreUnavailable(f"cannot read the snapshot of space {space!r}: {e}") from e
        if not h:  # deleted between the two reads: a newer one exists
            return self.latest_snapshot(space)
        with self._lock:
            self._loading[space] = seq
        derived = json.loads(h[b"derived"]) if b"derived" in h else {}  # older snapshots have none
        return Snapshot(space, seq, h[b"state"], json.loads(h[b"catalog"]), float(h[b"created"]), derived)

    def events_after(self, space: str, seq: int) -> Iterator[LogEvent]:
        """Replay the log after `seq`; once exhausted, this replica's tailer continues from there."""
        for batch in self.event_batches_after(space, seq):
            yield from batch

    def event_batches_after(self, space: str, seq: int) -> Iterator[list[LogEvent]]:
        """events_after, one XRANGE page (decoded in bulk) at a time."""
        key = _skey(space, "log")
        last = seq
        while True:
            with gc_paused():  # XRANGE returns at once; its reply and the events hold no cycles
                try:
                    entries = self._r.xrange(key, min=f"0-{last + 1}", max="+", count=LOG_READ_COUNT)
                except RedisError as e:
                    raise StoreUnavailable(f"cannot read the log of space {space!r}: {e}") from e
                page = _Page(space, entries)
                k = page.run_end(0, last + 1)
                if k < len(page.seqs):
                    raise RuntimeError(
                        f"space {space!r}: the log jumps from seq {last + k} to {page.seqs[k]} "
                        "(trimmed beyond the snapshot)"
                    )
                batch = page.events()
                last += len(batch)
                more = len(entries) >= LOG_READ_COUNT
                # The raw reply (two lists per entry) is garbage once decoded: dropped before the batch is
                # applied, or the cyclic GC keeps scanning it meanwhile (measured ~2 us per event of replay).
                del entries, page
            if batch:
                yield batch
            if not more:
                break
        with self._lock:
            self._loading.pop(space, None)
            self._applied.setdefault(space, last)

    def _served_spaces(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys([*self._applied, *self._loading]))

    def get_decision(self, event_id: str) -> Decision | None:
        # An event id does not name its space: look in each space this replica serves (one round trip).
        spaces = self._served_spaces()
        try:
            pipe = self._r.pipeline(transaction=False)
            for space in spaces:
                pipe.mget(
                    [
                        _skey(space, "dec", event_id),
                        _skey(space, "fb", event_id),
                        _skey(space, "act", event_id),
                    ]
                )
            found = pipe.execute()
        except RedisError as e:
            raise StoreUnavailable(f"cannot read decision {event_id}: {e}") from e
        for raw, claim, act in found:
            if raw is None:
                continue
            with self._lock:
                if len(self._claims_seen) >= 4096:
                    self._claims_seen.clear()
                self._claims_seen[event_id] = claim
            return _decision_from_json(raw, act)
        return None

    def observations(self, space: str, event_ids: list[str]) -> dict[str, list[Observation]]:
        out: dict[str, list[Observation]] = {}
        try:
            for start in range(0, len(event_ids), READ_COUNT):
                chunk = event_ids[start : start + READ_COUNT]
                pipe = self._r.pipeline(transaction=False)
                for eid in chunk:
                    pipe.hgetall(_skey(space, "obs", eid))
                for eid, entries in zip(chunk, pipe.execute(), strict=True):
                    out[eid] = sorted(
                        (_observation(eid, k, v) for k, v in entries.items()), key=lambda o: o.n
                    )
        except RedisError as e:
            raise StoreUnavailable(f"cannot read observations: {e}") from e
        return out

    def closure(self, event_id: str) -> Closure | None:
        # A claim read a moment ago by get_decision will do: if it was made since, the append says DUPLICATE.
        with self._lock:
            seen = event_id in self._claims_seen
            raw = self._claims_seen.pop(event_id, None)
        if not seen:
            try:
                pipe = self._r.pipeline(transaction=False)
                for space in self._served_spaces():
                    pipe.get(_skey(space, "fb", event_id))
                raw = next((c for c in pipe.execute() if c is not None), None)
            except RedisError as e:
                raise StoreUnavailable(f"cannot read event {event_id}: {e}") from e
        return None if raw is None else _claim_closure(raw)

    def selection_counts(self, space: str) -> dict[str, int]:
        try:
            raw = self._r.hgetall(_skey(space, "sel"))
        except RedisError as e:
            raise StoreUnavailable(f"cannot read the selection counts of space {space!r}: {e}") from e
        return {k.decode(): int(v) for k, v in raw.items()}

    def open_decisions(self, space: str, since: float) -> Iterator[Decision]:
        """Every replica's open decisions (so a restarted replica can apply default rewards for them)."""
        index = _skey(space, "decidx")
        start = 0
        while True:
            try:
                ids = self._r.zrangebyscore(index, f"({since!r}", "+inf", start=start, num=READ_COUNT)
                if not ids:
                    return
                pipe = self._r.pipeline(transaction=False)
                for eid in ids:
                    pipe.get(_skey(space, "dec", eid.decode()))
                    pipe.exists(_skey(space, "fb", eid.decode()))
                    pipe.get(_skey(space, "act", eid.decode()))
                res = pipe.execute()
            except RedisError as e:
                raise StoreUnavailable(f"cannot read the open decisions of space {space!r}: {e}") from e
            for raw, closed, act in zip(res[::3], res[1::3], res[2::3], strict=True):
                if raw is not None and not closed:
                    yield _decision_from_json(raw, act)
            start += len(ids)

    def purge_decisions(self, before: float) -> int:
        # Decisions expire by their TTL; this only drops index entries of decisions long gone.
        try:
            with self._lock:
                spaces = list(self._applied)
            return sum(int(self._r.zremrangebyscore(_skey(s, "decidx"), "-inf", before)) for s in spaces)
        except RedisError as e:
            raise StoreUnavailable(f"cannot purge decisions: {e}") from e

    def decision_log(self, space: str) -> Iterator[tuple[Decision, float | None]]:
        """The decisions still in Redis (window + decision_margin_s), by deadline, with their rewards."""
        index = _skey(space, "decidx")
        start = 0
        while True:
            try:
                ids = self._r.zrange(index, start, start + READ_COUNT - 1)
                if not ids:
                    return
                keys = [_skey(space, kind, eid.decode()) for eid in ids for kind in ("dec", "fb")]
                res = self._r.mget(keys)
            except RedisError as e:
                raise StoreUnavailable(f"cannot read the decisions of space {space!r}: {e}") from e
            for raw, claim in zip(res[::2], res[1::2], strict=True):
                if raw is not None:
                    parts = claim.split() if claim is not None else []
                    learned = len(parts) == 3 and parts[0] != NO_FEEDBACK.encode()
                    yield _decision_from_json(raw), float(parts[1]) if learned else None
            start += len(ids)

    # -- for tests and tools -----------------------------------------------------------------------
    def applied_seq(self, space: str) -> int:
        with self._lock:
            return self._applied.get(space, 0)
