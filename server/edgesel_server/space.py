"""One selection space at run time: schema, catalog, learned state, pending decisions.

One owner per piece of state:
- the log-derived state (catalog, bandit, per-arm counters, applied seq) is written only by `apply`, called
  in log order by the store's thread (writer or tailer) under `self.lock`; other threads read it through the
  methods below (`model`, `models`, `export_state`, `arm_stats`, ...), which take the lock. Select's hot
  path does not: the Bandit is thread-safe itself and the catalog's tuple of active ids is replaced, never
  mutated;
- the pending decisions and the counters (`pending`, `stats`, see pending.py) belong to the asyncio loop;
- selection counts live in the store, written with each durable decision.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson

from edgesel_server import qoe_policy
from edgesel_server.catalog import Catalog, CatalogError, Model, UnknownModelError
from edgesel_server.config import ServerConfig, SpaceConfig
from edgesel_server.core import Bandit, QoeModel, Selection, SnapshotError, uses_model_features
from edgesel_server.errors import InvalidPreferences, InvalidState, NoEligibleModel
from edgesel_server.failed_pairs import FailedPairs
from edgesel_server.guardrails import Breach, Guardrails
from edgesel_server.holdout import (
    EXCLUDED,
    HOLDOUT,
    POLICY,
    UNKNOWN_CLASS,
    device_class,
    in_holdout,
    variance_bucket,
)
from edgesel_server.lift import BUCKETS, LiftTracker
from edgesel_server.pending import PendingDecisions, SpaceStats
from edgesel_server.qoe import MEASUREMENTS
from edgesel_server.schema import CategoricalSpec, FeatureSchema
from edgesel_server.status.history import SpaceHistory
from edgesel_server.store import base as ev
from edgesel_server.store.base import Decision, LogEvent, Snapshot

log = logging.getLogger(__name__)

REWARD_KINDS = (ev.FEEDBACK, ev.DEFAULT_REWARD)
# apply_batch holds the space's lock for at most this many events at a time (Selects wait meanwhile).
LEARN_BATCH_MAX = 256

REJECTED_IMPORTS_KEPT = 64

# Names a device may use for QoE weight overrides, mapped onto the QoE function's measurement names.
WEIGHT_ALIASES = {"rating": "user_rating", "latency": "latency_ms", "energy": "energy_mj"}


__all__ = ["ArmCounters", "Choice", "NoEligibleModel", "SpaceRuntime", "new_event_id", "normalize_weights"]


@dataclass
class ArmCounters:
    """Log-derived per-arm figures (n_selections is counted by the store with each durable decision; the
    field stays so that snapshots written before that still load)."""

    n_selections: int = 0
    n_updates: int = 0
    reward_sum: float = 0.0
    last_update: float = 0.0


@dataclass
class Choice:
    decision: Decision
    model: Model
    score: float
    exploratory: bool
    ranking: list[tuple[str, float, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class QoeDecision:
    """qoe_model's decision, shaped like the core's Selection (id, mean, bonus, total, ...)."""

    id: str
    mean: float
    bonus: float
    total: float
    propensity: float
    exploratory: bool
    scores: tuple | None


EVENT_ID_TIME_HEX = 12  # the creation time in milliseconds, as the first 12 hex digits of an event id


class _RandomHex:
    """128-bit random parts from the OS's generator (what secrets.token_hex(16) gives), read 256 at a time:
    one getrandom call per 256 Selects instead of one each. A forked child drops what it inherited, so no two
    processes hand out the same part; list.pop is atomic, so threads never share one."""

    BATCH = 256

    def __init__(self) -> None:
        self._parts: list[str] = []
        os.register_at_fork(after_in_child=self._parts.clear)

    def take(self) -> str:
        try:
            return self._parts.pop()
        except IndexError:
            raw = os.urandom(16 * self.BATCH).hex()
            self._parts.extend(raw[i : i + 32] for i in range(32, len(raw), 32))
            return raw[:32]


_random_hex = _RandomHex()


def new_event_id(now: float | None = None) -> str:
    """44 lowercase hex digits: the creation time (ms, 12 digits) then 128 random bits.

    The random part makes an event id unguessable, so only the device that got it can give feedback; the
    time lets a replica tell an id too young to have reached the shared store from one that never existed."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:0{EVENT_ID_TIME_HEX}x}{_random_hex.take()}"


def event_id_time(event_id: str) -> float | None:
    """When an event id was made, or None for ids of another format (e.g. the 32 digits of older servers)."""
    if len(event_id) != EVENT_ID_TIME_HEX + 32:
        return None
    try:
        return int(event_id[:EVENT_ID_TIME_HEX], 16) / 1000
    except ValueError:
        return None


def normalize_weights(weights: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in weights.items():
        name = WEIGHT_ALIASES.get(k, k)
        if name not in MEASUREMENTS:
            known = ", ".join(sorted(set(MEASUREMENTS) | set(WEIGHT_ALIASES)))
            raise InvalidPreferences(f"unknown qoe weight {k!r}; known: {known}", field="qoe_weights")
        if not math.isfinite(v) or v < 0:
            raise InvalidPreferences(f"qoe weight {k!r} = {v} must be finite and >= 0", field="qoe_weights")
        out[name] = float(v)
    return out


def _qoe_request(prefs: Mapping) -> dict:
    """qoe_model's per-request arguments from a decision's preferences."""
    return {"latency_budget_ms": prefs.get("latency_budget_ms"), "weights": prefs.get("qoe_weights")}


def reward_outcome(payload: bytes) -> dict:
    """A reward event's payload as json.loads reads it ({} for none), parsed by orjson (~4x faster; both
    read every float correctly rounded, so the same bits: tests/server/test_reward_payloads.py). What orjson
    refuses and json accepts (NaN, Infinity, lone surrogates, other encodings) is read by json. One difference
    is left: orjson reads an integer beyond 64 bits as a float; no payload has one (its integers are a
    bucket < 64, a record version, counts)."""
    if not payload:
        return {}
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def _ranking(scores: tuple) -> list[tuple[str, float, float, float]]:
    """Every scored arm, best total first (ties by id)."""
    ids, mean, bonus, total = scores
    order = sorted(range(len(ids)), key=lambda j: (-total[j], ids[j]))
    return [(ids[j], float(mean[j]), float(bonus[j]), float(total[j])) for j in order]


class SpaceRuntime:
    def __init__(self, cfg: SpaceConfig, server: ServerConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.server = server
        self.device_schema = FeatureSchema(cfg.device_features, kind="device")
        self.model_schema = FeatureSchema(cfg.model_features, kind="model")
        self.qoe = cfg.qoe
        self.lock = threading.RLock()
        self.catalog = Catalog(self.model_schema)
        self.bandit = self._new_bandit()
        self.failed_pairs = FailedPairs()
        self.counters: dict[str, ArmCounters] = {}
        self.active: tuple[str, ...] = ()
        self.applied_seq = 0
        # seq -> why an IMPORT_MODELS event was applied as nothing (a conflicting change got into the log
        # first); read by the engine that appended it. Bounded: only the newest few are kept.
        self.rejected_imports: OrderedDict[int, str] = OrderedDict()
        self.since_snapshot = 0
        # Decisions advance the core's generator (forced sampling, Thompson draws): a final snapshot after
        # them lets a restarted space continue the same random stream.
        self.decided_since_snapshot = False
        self.last_snapshot_time = 0.0
        self.pending = PendingDecisions(server.max_pending_decisions)  # event loop only
        self.stats = SpaceStats()  # event loop only
        # Outcomes of applied rewards (log-derived, like the bandit): the report and the guardrails.
        self.lift = LiftTracker(cfg.report.window_s)
        self.guardrails = Guardrails(cfg.guardrails)
        # class -> models withdrawn there; replaced (never mutated) by `apply`: Select reads it lock-free
        self.withdrawn: Mapping[str, frozenset[str]] = {}
        # The status page's in-memory history (status/history.py); None unless the page is served.
        self.history: SpaceHistory | None = None

    @property
    def uses_model_features(self) -> bool:
        return self.learns_measurements or uses_model_features(self.cfg.policy.kind)

    @property
    def learns_measurements(self) -> bool:
        """qoe_model: the learner models the measurements themselves (QoeModel), not the scalar reward."""
        return self.cfg.policy.kind == "qoe_model"

    def _new_bandit(self) -> Bandit | QoeModel:
        p = self.cfg.policy
        if self.learns_measurements:
            return QoeModel(
                len(self.device_schema),
                len(self.model_schema),
                qoe_policy.core_spec(self.qoe),
                alpha=p.alpha,
                lam=p.lam,
                refactor_every=p.refactor_every,
                baseline_model=p.baseline_model,
                max_loss=p.max_loss,
                half_life=p.half_life,
            )
        return Bandit(
            p.kind,
            len(self.device_schema),
            len(self.model_schema) if self.uses_model_features else 0,
            alpha=p.alpha,
            lam=p.lam,
            refactor_every=p.refactor_every,
            seed=p.seed,
            forced_sampling=p.forced_sampling,
            half_life=p.half_life,
        )

    def _add_arm(self, bandit: Bandit | QoeModel, model_id: str) -> None:
        if isinstance(bandit, QoeModel):
            model = self.catalog.get(model_id)
            bandit.add_arm(
                model_id, self.catalog.vector(model_id), accuracy=qoe_policy.catalog_accuracy(model)
            )
        elif self.uses_model_features:
            bandit.add_arm(model_id, self.catalog.vector(model_id))
        else:
            bandit.add_arm(model_id)

    @property
    def needs_final_snapshot(self) -> bool:
        """Anything since the last snapshot that a restart would otherwise lose or redo differently."""
        return bool(self.since_snapshot) or self.decided_since_snapshot

    @property
    def policy_version(self) -> str:
        return str(self.applied_seq)

    # -- restore -----------------------------------------------------------------------------------
    def restore(self, snap: Snapshot | None) -> None:
        """Start from a snapshot (or empty); later events are then replayed through `apply`."""
        with self.lock:
            if snap is None:
                return
            self.catalog = Catalog(self.model_schema)
            for d in snap.catalog:
                model = Model.from_dict(d["model"])
                self.catalog.add(model)
                self.counters[model.id] = ArmCounters(**d.get("counters", {}))
                self.failed_pairs.restore(model.id, d.get("failed_on", ()))
            bandit = self._restore_bandit(snap.state)
            self._check_compatible(bandit)
            self.bandit = bandit
            self.applied_seq = snap.seq
            self.last_snapshot_time = snap.created
            derived = snap.derived
            if "lift" in derived:
                self.lift = LiftTracker.from_dict(derived["lift"])
            if "guardrails" in derived:
                self.guardrails.load(derived["guardrails"])
            self._refresh_active()

    def _restore_bandit(self, blob: bytes) -> Bandit | QoeModel:
        """The learned state from a snapshot, with the config's settings (forced sampling, half-life), which
        are not learned state."""
        p = self.cfg.policy
        if self.learns_measurements:
            return QoeModel.from_bytes(blob, half_life=p.half_life)
        return Bandit.from_bytes(blob, forced_sampling=p.forced_sampling, half_life=p.half_life)

    def _choose_qoe(
        self, model: QoeModel, x: np.ndarray, arms: list[str] | None, prefs: dict, with_scores: bool
    ) -> QoeDecision:
        """qoe_model's decision under the request's own latency budget and weights: the highest optimistic
        QoE (ties to the smallest id; deterministic, propensity 1), or the baseline while conservative mode
        holds exploration back. One call into the core; the scores come back only to be ranked."""
        model_id, mean, bonus, total, exploratory, scores = model.choose(
            x, arms, with_scores=with_scores, **_qoe_request(prefs)
        )
        return QoeDecision(model_id, mean, bonus, total, 1.0, exploratory, scores)

    def _check_compatible(self, bandit: Bandit | QoeModel) -> None:
        want = self._new_bandit()
        # Learned state must match; settings (alpha, forced_sampling, half_life) are the config's.
        keys = ("policy", "device_dim", "model_dim")
        got = {k: getattr(bandit, k) for k in keys}
        wanted = {k: getattr(want, k) for k in keys}
        if got != wanted:
            raise SnapshotError(
                f"space {self.name!r}: the state was learned with "
                + " ".join(f"{k}={v}" for k, v in got.items())
                + " but the config now says "
                + " ".join(f"{k}={v}" for k, v in wanted.items())
                + "; reset the space or restore the config"
            )

    def _refresh_active(self) -> None:
        self.active = tuple(self.catalog.active_ids())
        by_class: dict[str, set[str]] = {}
        for model_id, cls in self.guardrails.withdrawn:
            by_class.setdefault(cls, set()).add(model_id)
        withdrawn = {cls: frozenset(ms) for cls, ms in by_class.items()}
        if withdrawn != self.withdrawn:
            self.withdrawn = withdrawn

    # -- the log -----------------------------------------------------------------------------------
    def apply(self, e: LogEvent) -> None:
        """Apply one committed event. Called in log order, by one thread at a time."""
        with self.lock:
            if e.kind in REWARD_KINDS:
                assert e.x is not None
                outcome = reward_outcome(e.payload)
                # A holdout decision's reward is recorded and reported but never teaches the policy: the
                # flag rides in the event, so replay and every replica skip the same events.
                taught = outcome.get("group") != HOLDOUT
                if taught:
                    if isinstance(self.bandit, QoeModel):
                        qoe_policy.learn_record(self.bandit, e.model_id, e.x, e.reward, outcome)
                    else:
                        self.bandit.update(e.model_id, e.x, e.reward)
                self._account(e, outcome, taught)  # the same bookkeeping as a batch (apply_batch)
                self._refresh_active()
                return
            if e.kind == ev.NO_FEEDBACK:
                pass  # an aggregating decision's window closed without Feedback (dropped): only its place
            elif e.kind == ev.LIFT_GUARDRAIL:
                cls = json.loads(e.payload)["device_class"]
                if self.guardrails.lift(e.model_id, cls, seq=e.seq, created=e.created):
                    log.warning(
                        "guardrail lifted: the model is offered to the device class again",
                        extra={"space": self.name, "model_id": e.model_id, "device_class": cls, "seq": e.seq},
                    )
            elif e.kind == ev.ADD_MODEL:
                model = Model.from_dict(json.loads(e.payload))
                self.catalog.add(model)
                self._add_arm(self.bandit, model.id)
                self.counters.setdefault(model.id, ArmCounters())
            elif e.kind == ev.UPDATE_MODEL:
                d = json.loads(e.payload)
                self.catalog.update(
                    e.model_id,
                    version=d.get("version"),
                    artifact_uri=d.get("artifact_uri"),
                    metadata=d.get("metadata"),
                )
                self.failed_pairs.forget_model(e.model_id)  # a new version may run where the old did not
            elif e.kind == ev.IMPORT_MODELS:
                self._apply_import(e)
            elif e.kind == ev.RETIRE_MODEL:
                self.catalog.retire(e.model_id)
            elif e.kind == ev.RESET:
                bandit = self._new_bandit()
                for m in self.catalog.models(include_retired=True):
                    self._add_arm(bandit, m.id)
                self.bandit = bandit
                self.counters = {m.id: ArmCounters() for m in self.catalog.models(include_retired=True)}
                self.failed_pairs.clear()
            elif e.kind == ev.IMPORT:
                bandit = self._restore_bandit(e.payload)
                for m in self.catalog.models(include_retired=True):
                    if m.id not in bandit:
                        self._add_arm(bandit, m.id)
                self.bandit = bandit
            else:
                raise ValueError(f"unknown event kind {e.kind!r}")
            self._refresh_active()
            self.applied_seq = e.seq
            self.since_snapshot += 1

    def apply_batch(self, events: Sequence[LogEvent], *, isolate: bool = False) -> None:
        """Apply committed events in log order with exactly the result of `apply` one by one, bit for bit (a
        replica catching up, or replaying at start). Runs of reward events share one lock, one payload parse
        each and one catalog refresh, and a linear bandit learns a run through one `update_batch` (0.8 us per
        observation in Rust). An event that fails raises, as `apply` does; with `isolate` it is logged and
        skipped instead, as the tailer does around `apply`."""
        i = 0
        while i < len(events):
            j = i
            while j < len(events) and j - i < LEARN_BATCH_MAX and events[j].kind in REWARD_KINDS:
                j += 1
            if j == i:
                self._apply_one(events[i], isolate)
                i += 1
                continue
            if not self._apply_rewards(events[i:j], isolate):
                for e in events[i:j]:  # one the core refuses: one by one, so the others still count
                    self._apply_one(e, isolate)
            i = j

    def _apply_one(self, e: LogEvent, isolate: bool) -> None:
        try:
            self.apply(e)
        except Exception:
            if not isolate:
                raise
            # The event is durable and replays; a bug must not stop the others.
            log.exception("applying event seq=%d of space %s failed", e.seq, self.name)

    def _apply_rewards(self, run: Sequence[LogEvent], isolate: bool) -> bool:
        """What `apply` does for each of these FEEDBACK/DEFAULT_REWARD events, as one batch: the learner
        learns the run in one call (`update_batch`), then the run's bookkeeping (`_account_run`). False (and
        nothing applied) if the linear bandit refuses one of them."""
        with self.lock:
            if any(e.x is None for e in run):
                return False
            outcomes = [reward_outcome(e.payload) for e in run]
            teach = [outcome.get("group") != HOLDOUT for outcome in outcomes]
            if isinstance(self.bandit, QoeModel):
                skipped = self._learn_qoe_run(run, outcomes, teach, isolate)
            else:
                skipped = set()
                taught_events = [e for e, taught in zip(run, teach, strict=True) if taught]
                if taught_events:
                    try:
                        self.bandit.update_batch(
                            [e.model_id for e in taught_events],
                            # (np.array, not np.stack: ~0.1 vs ~0.3 us per row, the same values)
                            np.array([e.x for e in taught_events], dtype=np.float64),
                            np.array([e.reward for e in taught_events], dtype=np.float64),
                        )
                    except ValueError:
                        return False
            self._account_run(run, outcomes, teach, skipped, isolate)
            self._refresh_active()
        return True

    def _learn_qoe_run(
        self, run: Sequence[LogEvent], outcomes: list[dict], teach: list[bool], isolate: bool
    ) -> set[int]:
        """qoe_model learns the run's taught events in order through `QoeModel.update_batch`, each exactly as
        `apply` learns it. An event the model refuses is tried alone, as `apply` would (which raises why):
        with `isolate` it is logged and left out of the bookkeeping (its position returned), else the events
        before it are accounted and the error raised."""
        assert isinstance(self.bandit, QoeModel)
        todo = [k for k, taught in enumerate(teach) if taught]
        skipped: set[int] = set()
        while todo:
            learned = qoe_policy.learn_records(
                self.bandit, [run[k] for k in todo], [outcomes[k] for k in todo]
            )
            if learned == len(todo):
                break
            k = todo[learned]
            try:
                qoe_policy.learn_record(self.bandit, run[k].model_id, run[k].x, run[k].reward, outcomes[k])
            except Exception:
                if not isolate:
                    self._account_run(run[:k], outcomes[:k], teach[:k], skipped)
                    raise
                log.exception("applying event seq=%d of space %s failed", run[k].seq, self.name)
                skipped.add(k)
            todo = todo[learned + 1 :]
        return skipped

    def _account(self, e: LogEvent, outcome: Mapping, taught: bool) -> None:
        """apply's bookkeeping of a reward event whose learning is done."""
        if taught:
            c = self.counters.get(e.model_id)
            if c is None:
                c = self.counters[e.model_id] = ArmCounters()
            c.n_updates += 1
            c.reward_sum += e.reward
            c.last_update = e.created
        installation = qoe_policy.failed_installation_of(outcome)
        if installation:
            self.failed_pairs.add(installation, e.model_id)
        if "group" in outcome:  # events written before the report existed carry no outcome
            self._observe(e, outcome)
        self.applied_seq = e.seq
        self.since_snapshot += 1

    def _account_run(
        self,
        run: Sequence[LogEvent],
        outcomes: list[dict],
        teach: list[bool],
        skipped: set[int],
        isolate: bool = False,
    ) -> None:
        """`_account` of each event of a run in order (except the `skipped` positions), with exactly its
        result. This is per-event work on every replica, so the usual event (an outcome as holdout.py writes
        it) is accounted inline here and its report row goes to the lift tracker with the others in one call;
        any other event goes through `_account` itself, after the rows before it (with `isolate`, one that
        fails there is logged and skipped, as `apply_batch` does with events)."""
        counters, history = self.counters, self.history
        lift_rows: list[tuple[str, str, float, float | None, bool, float, int | None]] = []
        watched = self.guardrails.cfg.enabled  # (observe does nothing otherwise: not called at all)
        accounted, last_seq = 0, self.applied_seq  # written to self when the loop ends or hands an event on
        try:
            for k, (e, outcome, taught) in enumerate(zip(run, outcomes, teach, strict=True)):
                if skipped and k in skipped:
                    continue
                group = outcome.get("group")
                latency = outcome.get("latency_ms")
                bucket = outcome.get("bucket")
                failed = bool(outcome.get("failed", False))
                usual = (
                    type(outcome.get("device_class")) is str
                    and (latency is None or type(latency) is float)
                    and (bucket is None or (type(bucket) is int and 0 <= bucket < BUCKETS))
                    and (not failed or type(outcome.get("prefs", {})) is dict)
                )
                if group is None or not usual:
                    self.lift.add_many(lift_rows)
                    lift_rows = []
                    self.applied_seq, self.since_snapshot = last_seq, self.since_snapshot + accounted
                    accounted = 0
                    try:
                        self._account(e, outcome, taught)
                    except Exception:
                        if not isolate:
                            raise
                        # as the tailer does around `apply`: what the event changed before it failed stays
                        log.exception("applying event seq=%d of space %s failed", e.seq, self.name)
                    last_seq = self.applied_seq
                    continue
                if taught:
                    c = counters.get(e.model_id)
                    if c is None:
                        c = counters[e.model_id] = ArmCounters()
                    c.n_updates += 1
                    c.reward_sum += e.reward
                    c.last_update = e.created
                if failed:  # qoe_policy.failed_installation_of
                    installation = str(outcome.get("prefs", {}).get("installation_id", ""))
                    if installation:
                        self.failed_pairs.add(installation, e.model_id)
                cls = outcome["device_class"]
                if group == POLICY or group == HOLDOUT:
                    if bucket is None:  # from before the variance buckets: its decision is its own device
                        bucket = variance_bucket(self.name, e.event_id or str(e.seq))
                    lift_rows.append((group, cls, e.reward, latency, failed, e.created, bucket))
                    if history is not None:
                        reason = str(outcome.get("failure_reason", ""))
                        history.on_outcome(group, cls, e.model_id, e.reward, failed, reason, e.created)
                if watched:
                    self._guard(e, group, cls, failed, latency)
                last_seq = e.seq
                accounted += 1
        finally:
            self.applied_seq, self.since_snapshot = last_seq, self.since_snapshot + accounted
            self.lift.add_many(lift_rows)

    def _observe(self, e: LogEvent, outcome: Mapping) -> None:
        group, cls = outcome["group"], outcome["device_class"]
        latency = outcome.get("latency_ms")
        failed = bool(outcome.get("failed", False))
        if group in (POLICY, HOLDOUT):
            bucket = outcome.get("bucket")
            if bucket is None:  # an event from before the variance buckets: its decision is its own device
                bucket = variance_bucket(self.name, e.event_id or str(e.seq))
            self.lift.add(
                group, cls, qoe=e.reward, latency_ms=latency, failed=failed, at=e.created, bucket=int(bucket)
            )
            if self.history is not None:
                reason = str(outcome.get("failure_reason", ""))
                self.history.on_outcome(group, cls, e.model_id, e.reward, failed, reason, e.created)
        self._guard(e, group, cls, failed, latency)

    def _guard(self, e: LogEvent, group: str, cls: str, failed: bool, latency: float | None) -> None:
        """The guardrails' look at one applied outcome (a breach is logged)."""
        breach = self.guardrails.observe(
            model_id=e.model_id,
            device_class=cls,
            holdout=group == HOLDOUT,
            failed=failed,
            latency_ms=latency,
            seq=e.seq,
            created=e.created,
        )
        if breach is not None:
            self._log_breach(breach)

    def _log_breach(self, b: Breach) -> None:
        log.warning(
            "guardrail breached: the model is withdrawn from the device class",
            extra={
                "space": self.name,
                "model_id": b.model_id,
                "device_class": b.device_class,
                "guardrail": b.reason,
                "value": b.value,
                "limit": b.limit,
                "seq": b.seq,
            },
        )

    def _apply_import(self, e: LogEvent) -> None:
        """All of an import or none of it. The engine checked it before appending, but another change may
        have reached the log in between (a concurrent AddModel, another replica): every replica then finds
        the same conflict in the same log and skips the whole event alike."""
        d = json.loads(e.payload)
        adds = [Model.from_dict(m) for m in d.get("add", [])]
        changes = list(d.get("update", []))
        problem = ""
        new: set[str] = set()
        for model in adds:
            try:
                if model.id in new:
                    raise CatalogError(f"model {model.id!r} is twice in the import")
                self.catalog.validate_new(model)
            except CatalogError as error:
                problem = str(error)
                break
            new.add(model.id)
        for change in changes if not problem else []:
            if change["id"] not in self.catalog:
                problem = f"model {change['id']!r} is not in the catalog"
                break
        if problem:
            log.warning(
                "import skipped: it conflicts with an earlier change",
                extra={"space": self.name, "seq": e.seq, "error": problem},
            )
            self.rejected_imports[e.seq] = problem
            while len(self.rejected_imports) > REJECTED_IMPORTS_KEPT:
                self.rejected_imports.popitem(last=False)
            return
        for model in adds:
            self.catalog.add(model)
            self._add_arm(self.bandit, model.id)
            self.counters.setdefault(model.id, ArmCounters())
        for change in changes:
            self.catalog.update(
                change["id"],
                version=change.get("version"),
                artifact_uri=change.get("artifact_uri"),
                metadata=change.get("metadata"),
            )

    def snapshot(self) -> Snapshot:
        with self.lock:
            catalog = [
                # A copy: the writer thread keeps applying events after this, but the snapshot is as of `seq`.
                {
                    "model": m.to_dict(),
                    "counters": asdict(self.counters.get(m.id, ArmCounters())),
                    "failed_on": self.failed_pairs.of_model(m.id),
                }
                for m in self.catalog.models(include_retired=True)
            ]
            derived = {"lift": self.lift.to_dict(), "guardrails": self.guardrails.to_dict()}
            snap = Snapshot(
                self.name, self.applied_seq, self.bandit.to_bytes(), catalog, time.time(), derived
            )
            self.since_snapshot = 0
            self.decided_since_snapshot = False
            self.last_snapshot_time = snap.created
            return snap

    # -- decisions ---------------------------------------------------------------------------------
    def eligible(
        self, requested: Sequence[str], max_model_size_mb: float | None, installation_id: str = ""
    ) -> list[str]:
        """The models this request may get; models known not to run on `installation_id` are left out
        unless that would leave none."""
        ids = self._eligible(requested, max_model_size_mb)
        failed = self.failed_pairs.excluded(installation_id, ids)
        if failed and len(failed) < len(ids):
            ids = [m for m in ids if m not in failed]
        return ids

    def _eligible(self, requested: Sequence[str], max_model_size_mb: float | None) -> list[str]:
        if requested:
            seen = set()
            ids = []
            for mid in requested:
                if mid not in seen:
                    seen.add(mid)
                    if mid in self.catalog and not self.catalog.get(mid).retired:
                        ids.append(mid)
            if not ids:
                raise UnknownModelError(
                    f"none of the {len(seen)} eligible model id(s) is an active model of space {self.name!r}"
                )
        else:
            ids = list(self.active)
            if not ids:
                raise NoEligibleModel(f"space {self.name!r} has no active model")
        if max_model_size_mb is not None:
            if not math.isfinite(max_model_size_mb) or max_model_size_mb <= 0:
                raise InvalidPreferences(
                    f"max_model_size_mb must be a positive number, got {max_model_size_mb}",
                    field="preferences.max_model_size_mb",
                )
            ids = [
                m for m in ids if self.catalog.get(m).features.get("file_size_mb", 0.0) <= max_model_size_mb
            ]
            if not ids:
                raise NoEligibleModel(
                    f"no eligible model of space {self.name!r} fits in {max_model_size_mb:g} MB"
                )
        return ids

    def device_class(self, features: Mapping[str, float], labels: Mapping[str, str]) -> str:
        """The request's class for the report and guardrails (holdout.py), once the schema accepted it."""
        name = self.cfg.report.device_class
        spec = next((f for f in self.cfg.device_features if f.name == name), None)
        if name is None or spec is None:
            return device_class(None, features, labels)
        if isinstance(spec, CategoricalSpec):
            label = labels.get(name, spec.default)
            # a label outside `values` (accepted as "other" by unknown = "other"): one class, not one each
            return UNKNOWN_CLASS if label is None else label if label in spec.values else "other"
        if name not in features and spec.default is not None:
            features = {**features, name: spec.default}
        return device_class(name, features, labels)

    def group_of(self, installation_id: str, eligible: Sequence[str]) -> str:
        """POLICY, HOLDOUT (this installation is held out and the incumbent is eligible), or EXCLUDED (held
        out, but the incumbent is not eligible for this request: the policy decides, see holdout.py)."""
        h = self.cfg.holdout
        if h is None or not in_holdout(self.name, installation_id, h.share):
            return POLICY
        return HOLDOUT if h.model in eligible else EXCLUDED

    def offered(self, eligible: list[str], device_class: str) -> list[str]:
        """The eligible models minus those a guardrail withdrew from this device class."""
        withdrawn = self.withdrawn.get(device_class, frozenset())
        if not withdrawn:
            return eligible
        ids = [m for m in eligible if m not in withdrawn]
        if not ids:
            raise NoEligibleModel(
                f"every eligible model of space {self.name!r} is withdrawn from device class "
                f"{device_class!r} by a guardrail: {', '.join(sorted(withdrawn & set(eligible)))}",
                device_class=device_class,
                withdrawn=",".join(sorted(withdrawn & set(eligible))),
            )
        return ids

    def choose_holdout(
        self,
        x: np.ndarray,
        eligible: list[str],
        *,
        prefs: dict,
        owner: str,
        include_ranking: bool,
        device_class: str,
    ) -> Choice:
        """The incumbent, with propensity 1 and no draw from the core's generator (the policy's random
        stream is the same with or without the holdout's requests). The decision records what was eligible, as
        the policy's do, so that offline replay sees the same choices."""
        assert self.cfg.holdout is not None
        model_id = self.cfg.holdout.model
        all_active = self._all_active(eligible)
        # qoe_model scores under the request's own budget and weights, as it does for the policy's decisions.
        request = _qoe_request(prefs) if isinstance(self.bandit, QoeModel) else {}
        ids, mean, bonus, total = self.bandit.score(x, eligible, **request)
        j = ids.index(model_id)
        decision = self._decision(
            x,
            model_id,
            1.0,
            float(mean[j]),
            float(bonus[j]),
            [] if all_active else list(eligible),
            prefs,
            owner,
            HOLDOUT,
            device_class,
        )
        ranking = _ranking((ids, mean, bonus, total)) if include_ranking else []
        return Choice(decision, self.catalog.get(model_id), float(total[j]), False, ranking)

    def _all_active(self, eligible: list[str]) -> bool:
        return len(eligible) == len(self.active) and eligible == list(self.active)

    def _decision(
        self,
        x: np.ndarray,
        model_id: str,
        propensity: float,
        mean: float,
        bonus: float,
        eligible: list[str],
        prefs: dict,
        owner: str,
        group: str,
        device_class: str,
    ) -> Decision:
        now = time.time()
        return Decision(
            event_id=new_event_id(),
            space=self.name,
            model_id=model_id,
            x=x,
            created=now,
            deadline=now + self.cfg.reward_window_s,
            propensity=propensity,
            expected_qoe=mean,
            bonus=bonus,
            policy_version=self.applied_seq,
            eligible=eligible,
            prefs=prefs,
            owner=owner,
            group=group,
            device_class=device_class,
        )

    def choose(
        self,
        x: np.ndarray,
        eligible: list[str],
        *,
        prefs: dict,
        owner: str,
        include_ranking: bool,
        group: str = POLICY,
        device_class: str = "all",
    ) -> Choice:
        """Score the eligible arms and pick one; the decision is not stored yet."""
        all_active = self._all_active(eligible)
        bandit = self.bandit
        arms = None if all_active and len(bandit) == len(eligible) else eligible
        sel: QoeDecision | Selection
        if isinstance(bandit, QoeModel):
            sel = self._choose_qoe(bandit, x, arms, prefs, include_ranking)
        else:
            # The core makes the whole decision (greedy arm, forced sampling, propensity) with its own
            # generator, which is in the snapshot: a restored space decides exactly as one that never stopped.
            sel = bandit.select(x, arms, with_scores=include_ranking)
        decision = self._decision(
            x,
            sel.id,
            sel.propensity,
            sel.mean,
            sel.bonus,
            [] if all_active else list(eligible),
            prefs,
            owner,
            group,
            device_class,
        )
        ranking = _ranking(sel.scores) if include_ranking and sel.scores is not None else []
        self.decided_since_snapshot = True
        return Choice(decision, self.catalog.get(sel.id), sel.total, sel.exploratory, ranking)

    def reward_for(self, d: Decision, reward: float | None, measurements: Mapping[str, float]) -> float:
        if reward is not None:
            return self.qoe.check_reward(reward)
        return self.qoe.reward(
            measurements,
            latency_budget_ms=d.prefs.get("latency_budget_ms"),
            weights=d.prefs.get("qoe_weights"),
        )

    # -- reads for the servicers (under the lock: the store's thread may be applying an event) ------
    def has_model(self, model_id: str) -> bool:
        with self.lock:
            return model_id in self.catalog

    def model(self, model_id: str) -> Model:
        with self.lock:
            return self.catalog.get(model_id)

    def models(self, *, include_retired: bool = False) -> list[Model]:
        with self.lock:
            return self.catalog.models(include_retired=include_retired)

    def model_vectors(self) -> dict[str, np.ndarray]:
        with self.lock:
            return {m.id: self.catalog.vector(m.id) for m in self.catalog.models(include_retired=True)}

    def export_state(self) -> tuple[bytes, str]:
        with self.lock:
            return self.bandit.to_bytes(), self.policy_version

    def report(self, now: float) -> dict:
        """The lift report (lift.py) plus the guardrails' withdrawals and history, as of the applied seq."""
        with self.lock:
            rep = self.lift.report(now)
            rep["seq"] = self.applied_seq
            rep["holdout_model"] = self.cfg.holdout.model if self.cfg.holdout else ""
            rep["holdout_share"] = self.cfg.holdout.share if self.cfg.holdout else 0.0
            rep["withdrawn"] = [asdict(b) for _, b in sorted(self.guardrails.withdrawn.items())]
            rep["guardrail_history"] = list(self.guardrails.history)
            # log-derived, so it only grows with the log (a Prometheus counter)
            rep["withdrawals_total"] = sum(1 for h in self.guardrails.history if h["event"] == "withdrawn")
            return rep

    def is_withdrawn(self, model_id: str, device_class: str) -> bool:
        with self.lock:
            return self.guardrails.is_withdrawn(model_id, device_class)

    @property
    def total_updates(self) -> int:
        return self.bandit.n_updates

    def snapshot_due(self, every: int) -> bool:
        return self.since_snapshot >= every

    def arm_stats(self, model_id: str | None, selections: Mapping[str, int]) -> list[dict]:
        """Per-arm figures; `selections` are the store's durable selection counts."""
        with self.lock:
            models = [self.catalog.get(model_id)] if model_id else self.catalog.models(include_retired=True)
            out = []
            for m in models:
                if m.id not in self.bandit:
                    raise UnknownModelError(f"model {m.id!r} has no learned state")
                c = self.counters.get(m.id) or ArmCounters()
                if isinstance(self.bandit, QoeModel):
                    # Several targets, no single θ: the counters say how often the arm was learned from.
                    n_updates, theta_norm = c.n_updates, 0.0
                else:
                    st = self.bandit.arm_stats(m.id)
                    n_updates, theta_norm = int(st["n_updates"]), float(np.linalg.norm(st["theta"]))
                out.append(
                    {
                        "model_id": m.id,
                        "retired": m.retired,
                        "n_selections": selections.get(m.id, 0),
                        "n_updates": n_updates,
                        "reward_sum": c.reward_sum,
                        "mean_reward": c.reward_sum / c.n_updates if c.n_updates else 0.0,
                        "theta_norm": theta_norm,
                        "last_update": c.last_update,
                    }
                )
            return out

    # -- admin -------------------------------------------------------------------------------------
    def validate_add(self, model: Model) -> None:
        if model.retired:
            raise CatalogError("a new model cannot be retired")
        with self.lock:
            self.catalog.validate_new(model)

    def validate_import(self, blob: bytes) -> Bandit | QoeModel:
        try:
            bandit = self._restore_bandit(blob)
            self._check_compatible(bandit)
        except SnapshotError as e:
            raise InvalidState(str(e), field="state") from None
        unknown = [a for a in bandit.arm_ids() if a not in self.catalog]
        if unknown:
            raise InvalidState(
                f"the state has arms that are not in the catalog: {', '.join(unknown[:10])}", field="state"
            )
        return bandit
