"""The engine: every space, the store, and the Select/Feedback/admin logic the gRPC servicers call.

Kept free of gRPC so that it reads as the product's rules; `servicers.py` only translates messages and maps
the exceptions below onto status codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from edgesel_server import aggregation, qoe_policy
from edgesel_server.catalog import (
    CatalogError,
    DuplicateModelError,
    Model,
    check_feature_names,
    check_model_fields,
)
from edgesel_server.config import ServerConfig
from edgesel_server.errors import (
    ActivationExpired,
    DecisionNotYetStored,
    ExpiredEvent,
    FeedbackForbidden,
    InvalidArgument,
    InvalidModel,
    InvalidPreferences,
    InvalidReward,
    LimitExceeded,
    ModelExists,
    NotActivated,
    NotDeferred,
    OtherInstallation,
    StoreUnavailable,
    UnknownEvent,
    UnknownSpace,
)
from edgesel_server.futures import LoopBridge
from edgesel_server.holdout import HOLDOUT, outcome_payload
from edgesel_server.space import Choice, SpaceRuntime, event_id_time, normalize_weights
from edgesel_server.store import Store, open_store
from edgesel_server.store import base as ev
from edgesel_server.store.base import (
    Decision,
    DuplicateEvent,
    DuplicateObservation,
    LogEvent,
    Observation,
    StaleClose,
)

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5
MAX_REQUEST_ID = 128
MAX_EVENT_ID = 64
# An installation id scopes request ids: long enough to be unique per installation, short enough to log.
INSTALLATION_ID_LEN = (16, 128)
INSTALLATION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
RECENT_SELECTS_KEPT = 10_000  # request ids remembered for idempotent retries of Select
PURGE_INTERVAL_S = 600.0
CLOSE_ATTEMPTS = 3  # recomputations of an aggregate whose observations changed under it, per sweep
MAX_IMPORT_MODELS = 10_000  # one ImportModels request (its log event holds them all)

# The engine's errors under the names the rest of the server used before errors.py.
UnknownSpaceError = UnknownSpace
UnknownEventError = UnknownEvent
ExpiredEventError = ExpiredEvent
PermissionError_ = FeedbackForbidden


def check_installation_id(installation_id: str) -> None:
    lo, hi = INSTALLATION_ID_LEN
    if not lo <= len(installation_id) <= hi or not set(installation_id) <= INSTALLATION_ID_CHARS:
        raise InvalidArgument(
            f"installation_id must be {lo}-{hi} characters of [A-Za-z0-9-_.:] (the SDK sends 32 hex digits)",
            field="installation_id",
        )


def _content_key(
    reward: float | None, measurements: Mapping[str, float], failed: bool, failure_reason: str
) -> str:
    """A Feedback's identity when it carries no request_id: identical content is taken for a retry."""
    content = {"r": reward, "m": dict(sorted(measurements.items())), "f": failed, "fr": failure_reason}
    return "sha256:" + hashlib.sha256(json.dumps(content).encode()).hexdigest()[:32]


def check_event_id(event_id: str) -> None:
    if not event_id or len(event_id) > MAX_EVENT_ID:
        raise InvalidArgument(
            f"event_id must be 1-{MAX_EVENT_ID} characters (as SelectResponse.event_id gave it)",
            field="event_id",
        )


@dataclass
class FeedbackResult:
    duplicate: bool
    reward: float


@dataclass
class ActivateResult:
    decision: Decision  # as activated: `deadline` is the end of its feedback window
    already_activated: bool


def payload_json(payload: Mapping[str, Any]) -> bytes:
    """A reward event's payload: compact JSON, keys sorted. orjson (0.4 vs 5 us a Feedback) gives the bytes
    json.dumps(separators=(",", ":"), sort_keys=True) gives for ASCII text and most floats, and otherwise
    the same values (UTF-8 instead of escapes, "1e-7" for "1e-07"); the server's payloads hold no NaN or
    infinity (measurements and preferences are checked finite), which orjson would write as null. json for
    anything orjson refuses."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class Engine:
    def __init__(self, cfg: ServerConfig, store: Store | None = None) -> None:
        self.cfg = cfg
        self.spaces = {s.name: SpaceRuntime(s, cfg) for s in cfg.spaces}
        self.store = store or open_store(
            cfg.store,
            cfg.data_dir,
            durability=cfg.durability,
            retention_s=cfg.decision_retention_s,
            commit_delay_s=cfg.commit_delay_ms / 1000,
        )
        # Feedbacks being written right now, so a concurrent duplicate waits for the first one's fate.
        self._inflight: dict[str, asyncio.Future] = {}
        self._side_tasks: set[asyncio.Task] = set()
        self._bridge: LoopBridge | None = None
        self._recent_selects: OrderedDict[tuple[str, str, str, str], Choice] = OrderedDict()
        # Decisions answered while the store could not take them, oldest first: written, in order, as soon
        # as it can (every sweep, and before a Feedback for one of them). Bounded by max_unsaved_decisions.
        self.unsaved: OrderedDict[str, Decision] = OrderedDict()
        self.saved_late = 0  # decisions that reached the store from `unsaved` (a metric)
        self._flush_lock: asyncio.Lock | None = None
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, rebuild every space from its snapshot + log, and reload pending decisions."""
        self.store.open(self._apply, apply_batch=self._apply_batch)
        now = time.time()
        for space in self.spaces.values():
            snap = self.store.latest_snapshot(space.name)
            space.restore(snap)
            replayed = 0
            for batch in self.store.event_batches_after(space.name, snap.seq if snap else 0):
                space.apply_batch(batch)
                replayed += len(batch)
            missing = [m for m in space.cfg.models if not space.has_model(m.id)]
            for m in missing:
                # Replicas starting together race to add the configured models; the log keeps one add per
                # model, and one that another replica added meanwhile is simply there already.
                if space.has_model(m.id):
                    continue
                try:
                    space.validate_add(m)
                except CatalogError:
                    if space.has_model(m.id):
                        continue
                    raise
                self.store.submit_event(self._model_event(space.name, ev.ADD_MODEL, m)).result()
            # Decisions still open, and those whose window closed while this process was down, however long
            # ago (as long as the store keeps them): the latter get the missing-feedback rule on the first
            # sweep.
            overdue = 0
            for d in self.store.open_decisions(space.name, now - self.cfg.decision_retention_s):
                if d.awaiting_activation:  # never learned nor defaulted; activatable until its deadline
                    if d.deadline > now:
                        space.pending.add_deferred(d)
                    continue
                if d.deadline > now:
                    space.pending.add(d)
                else:
                    overdue += 1
                    space.stats.expired += 1
                    space.pending.retry_default_later(d)
            log.info(
                "space ready",
                extra={
                    "space": space.name,
                    "snapshot_seq": snap.seq if snap else 0,
                    "replayed": replayed,
                    "models_added": len(missing),
                    "pending": len(space.pending),
                    "overdue": overdue,  # window closed while down: the missing-feedback rule comes next
                    "seq": space.applied_seq,
                },
            )
        self.started = True

    def load_read_only(self) -> None:
        """Rebuild every space from its snapshot + log without writing anything (no configured models
        added, no writer started): for tools that only read, like the decision-log export."""
        for space in self.spaces.values():
            snap = self.store.latest_snapshot(space.name)
            space.restore(snap)
            for batch in self.store.event_batches_after(space.name, snap.seq if snap else 0):
                space.apply_batch(batch)

    def _apply(self, e: LogEvent) -> None:
        space = self.spaces.get(e.space)
        if space is None:
            log.warning("log event for a space not in the config is skipped", extra={"space": e.space})
            return
        space.apply(e)

    def _apply_batch(self, events: list[LogEvent]) -> None:
        """Events of one space (the store reads them per space), in log order."""
        space = self.spaces.get(events[0].space) if events else None
        if space is None:
            for e in events:
                self._apply(e)
            return
        space.apply_batch(events, isolate=True)

    async def run_background(self) -> None:
        """Expire decisions, snapshot, purge old decisions; runs until cancelled."""
        last_purge = 0.0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.time()
            # A failing store (disk full, backend down) must not end this loop: retry on the next sweep.
            try:
                await self.flush_unsaved()
                for space in self.spaces.values():
                    await self._expire(space, now)
                    if space.snapshot_due(self.cfg.snapshot_every):
                        await self.snapshot(space.name)
                if now - last_purge > PURGE_INTERVAL_S:
                    last_purge = now
                    n = await asyncio.to_thread(
                        self.store.purge_decisions, now - self.cfg.decision_retention_s
                    )
                    if n:
                        log.info("purged old decisions", extra={"count": n})
            except StoreUnavailable as e:
                log.warning("background pass skipped: the store is unavailable", extra={"error": str(e)})

    async def _expire(self, space: SpaceRuntime, now: float) -> None:
        retry = space.pending.take_default_retries()
        expired = space.pending.pop_expired(now)
        space.stats.expired += len(expired)
        space.stats.never_activated += len(space.pending.pop_expired_deferred(now))
        await self._close_missing(space, retry + expired)

    async def _close_missing(self, space: SpaceRuntime, decisions: list[Decision]) -> None:
        """Decisions whose window passed without feedback: learn the default reward, or drop them. In a space
        that aggregates rewards, every decision whose window passed: learn the aggregate (aggregation.py)."""
        decisions = [d for d in decisions if not d.awaiting_activation]
        if decisions and space.cfg.reward_aggregation != "first":
            await self._close_aggregated(space, decisions)
            return
        if not decisions or space.cfg.on_missing_feedback != "default":
            return
        # All at once: they share group commits instead of paying one fsync each.
        results = await asyncio.gather(
            *(self._append_reward(space, d, space.cfg.default_reward, ev.DEFAULT_REWARD) for d in decisions),
            return_exceptions=True,
        )
        for d, r in zip(decisions, results, strict=True):
            if isinstance(r, StoreUnavailable):
                space.pending.retry_default_later(d)  # not lost: tried again on the next sweep
            elif isinstance(r, DuplicateEvent):
                pass  # real feedback (or another replica's default) got there first
            elif isinstance(r, BaseException):
                log.error("default reward failed", extra={"event_id": d.event_id, "error": repr(r)})
            else:
                space.stats.defaults_applied += 1

    async def _close_aggregated(self, space: SpaceRuntime, decisions: list[Decision]) -> None:
        """Append each decision's close event: the aggregate of its observations (or the missing-feedback
        rule when it has none), computed from the store's observations and appended only if the store still
        has exactly those (else recomputed): the close is one event in the log, so every replica and every
        replay learns the same aggregate, and no Feedback is recorded after it (docs/rewards.md)."""
        todo = decisions
        for _attempt in range(CLOSE_ATTEMPTS):
            try:
                observed = await asyncio.to_thread(
                    self.store.observations, space.name, [d.event_id for d in todo]
                )
            except StoreUnavailable:
                break
            results = await asyncio.gather(
                *(self._append_close(space, d, observed[d.event_id]) for d in todo), return_exceptions=True
            )
            stale = []
            for d, r in zip(todo, results, strict=True):
                if isinstance(r, StaleClose):
                    stale.append(d)  # a Feedback was recorded meanwhile: aggregate again
                elif isinstance(r, StoreUnavailable):
                    space.pending.retry_default_later(d)
                elif isinstance(r, DuplicateEvent):
                    pass  # another replica closed it first (from the same observations)
                elif isinstance(r, BaseException):
                    log.error("closing a decision failed", extra={"event_id": d.event_id, "error": repr(r)})
                elif not observed[d.event_id] and space.cfg.on_missing_feedback == "default":
                    space.stats.defaults_applied += 1
            todo = stale
            if not todo:
                return
        for d in todo:
            space.pending.retry_default_later(d)  # tried again on the next sweep

    async def _append_close(self, space: SpaceRuntime, d: Decision, observations: list[Observation]) -> int:
        if observations:
            agg = aggregation.aggregate(space.cfg.reward_aggregation, observations)
            record = (
                qoe_policy.feedback_record(agg.measurements, agg.failed, agg.failure_reason, d.prefs)
                if agg.measurements or agg.failed
                else None
            )
            e = self._reward_event(
                space, d, agg.reward, ev.FEEDBACK, agg.measurements, record, agg.failed,
                extra={"aggregation": {"mode": space.cfg.reward_aggregation, "n": agg.n}},
            )  # fmt: skip
        elif space.cfg.on_missing_feedback == "default":
            e = self._reward_event(space, d, space.cfg.default_reward, ev.DEFAULT_REWARD)
        else:
            e = self._reward_event(space, d, 0.0, ev.NO_FEEDBACK)
        return await self._await(self.store.submit_close(e, len(observations)))

    async def snapshot(self, space_name: str) -> int:
        space = self.spaces[space_name]
        snap = space.snapshot()
        await asyncio.to_thread(self.store.save_snapshot, snap)
        return snap.seq

    async def flush_unsaved(self) -> None:
        """Write the decisions made while the store was down, oldest first; raises StoreUnavailable if
        the store still cannot take them (they stay, in order, for the next try)."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if not self.unsaved:
                return
            batch = list(self.unsaved.values())
            # Submitted together, so that one group commit writes them in this order.
            results = await asyncio.gather(
                *(self._await(self.store.submit_decision(d)) for d in batch), return_exceptions=True
            )
            failed = None
            for d, r in zip(batch, results, strict=True):
                if isinstance(r, BaseException):
                    failed = failed or r
                else:
                    self.unsaved.pop(d.event_id, None)
                    self.saved_late += 1
            if failed is not None:
                raise failed if isinstance(failed, StoreUnavailable) else StoreUnavailable(str(failed))
            log.info("decisions made while the store was down are stored now", extra={"count": len(batch)})

    async def _persist_decision(self, d: Decision) -> None:
        """Store a decision before its Select is answered; if the store cannot take it, keep it in
        `unsaved` (bounded: beyond `max_unsaved_decisions` the Select fails with UNAVAILABLE)."""
        if not self.unsaved:
            try:
                await self._await(self.store.submit_decision(d))
                return
            except StoreUnavailable as e:
                log.warning(
                    "decision kept until the store is back", extra={"event_id": d.event_id, "error": str(e)}
                )
        if len(self.unsaved) >= self.cfg.max_unsaved_decisions:
            raise StoreUnavailable(
                f"the store is unavailable and {len(self.unsaved)} decisions wait for it already; retry later"
            )
        self.unsaved[d.event_id] = d  # behind the older ones: decisions reach the store in order

    async def close(self) -> None:
        try:
            await self.flush_unsaved()
        except StoreUnavailable as e:
            log.error(
                "decisions lost: the store is still unavailable",
                extra={"count": len(self.unsaved), "error": str(e)},
            )
        for space in self.spaces.values():
            if space.needs_final_snapshot:
                try:
                    await self.snapshot(space.name)
                except StoreUnavailable as e:
                    log.error("final snapshot failed; the log still has everything", extra={"error": str(e)})
        self.store.close()

    def _await(self, fut: Future) -> asyncio.Future:
        """The store future as an awaitable on the running loop (results come back in bulk)."""
        loop = asyncio.get_running_loop()
        if self._bridge is None or self._bridge.loop is not loop:
            self._bridge = LoopBridge(loop)
        return self._bridge.wrap(fut)

    # -- selection ---------------------------------------------------------------------------------
    def space(self, name: str) -> SpaceRuntime:
        try:
            return self.spaces[name]
        except KeyError:
            raise UnknownSpaceError(
                f"unknown space {name!r}; this server has: {', '.join(self.spaces)}", field="space"
            ) from None

    async def select(
        self,
        space_name: str,
        features: Mapping[str, float],
        eligible: Sequence[str] = (),
        *,
        labels: Mapping[str, str] | None = None,
        latency_budget_ms: float | None = None,
        max_model_size_mb: float | None = None,
        qoe_weights: Mapping[str, float] | None = None,
        include_ranking: bool = False,
        owner: str = "",
        request_id: str = "",
        caller: str = "",
        installation_id: str = "",
        defer_activation: bool = False,
    ) -> Choice:
        """`owner` binds the decision's feedback to a token (or ""); `caller`, `installation_id` and
        `request_id` make a retried Select idempotent (only with an installation id: without one, two
        devices counting their request ids alike would share decisions). `defer_activation`: the decision
        counts, and its window opens, only at `activate` (it may be activated for decision_retention_s)."""
        space = self.space(space_name)
        if len(request_id) > MAX_REQUEST_ID:
            raise LimitExceeded(f"request_id is longer than {MAX_REQUEST_ID} characters", field="request_id")
        if installation_id:
            check_installation_id(installation_id)
        key = (space_name, caller, installation_id, request_id)
        labels = labels or {}
        if len(features) + len(labels) > self.cfg.max_features:
            raise LimitExceeded(
                f"{len(features) + len(labels)} device features and labels is more than the limit of "
                f"{self.cfg.max_features}",
                field="device_features",
            )
        if len(eligible) > self.cfg.max_eligible:
            raise LimitExceeded(
                f"{len(eligible)} eligible models is more than the limit of {self.cfg.max_eligible}",
                field="eligible_model_ids",
            )
        prefs: dict = {}
        if latency_budget_ms is not None:
            if not math.isfinite(latency_budget_ms) or latency_budget_ms <= 0:
                raise InvalidPreferences(
                    f"latency_budget_ms must be a positive number, got {latency_budget_ms}",
                    field="preferences.latency_budget_ms",
                )
            prefs["latency_budget_ms"] = latency_budget_ms
        if qoe_weights:
            weights = normalize_weights(qoe_weights)
            if not sum({**space.qoe.weights, **weights}.values()) > 0:
                raise InvalidPreferences(
                    "qoe_weights give zero weight to every measurement: no measurement could ever be scored",
                    field="preferences.qoe_weights",
                )
            prefs["qoe_weights"] = weights
        x = space.device_schema.vector(features, labels)
        idempotent = bool(request_id and installation_id)
        if idempotent:
            # A retried Select (same caller, installation, request id and device features, e.g. after a
            # lost reply) gets the decision it already made while that decision still waits for feedback.
            earlier = self._recent_selects.get(key)
            if (earlier is not None and earlier.decision.event_id in space.pending
                    and earlier.decision.deferred == defer_activation
                    and np.array_equal(earlier.decision.x, x)):  # fmt: skip
                return earlier
        if installation_id:
            # Kept with the decision (and logged with a failure), so a model that does not run on this
            # installation is not offered to it again (failed_pairs.py).
            prefs["installation_id"] = installation_id
        ids = space.eligible(eligible, max_model_size_mb, installation_id)
        cls = space.device_class(features, labels)
        group = space.group_of(installation_id, ids)
        if group == HOLDOUT:
            choice = space.choose_holdout(
                x, ids, prefs=prefs, owner=owner, include_ranking=include_ranking, device_class=cls
            )
        else:
            ids = space.offered(ids, cls)
            choice = space.choose(
                x,
                ids,
                prefs=prefs,
                owner=owner,
                include_ranking=include_ranking,
                group=group,
                device_class=cls,
            )
        d = choice.decision
        if defer_activation:
            d.deferred = True
            d.deadline = d.created + self.cfg.decision_retention_s  # the last moment to activate it
        await self._persist_decision(d)
        space.stats.decisions += 1
        space.stats.exploratory += int(choice.exploratory)
        if space.history is not None:
            space.history.on_decision(cls, d.model_id, d.bonus, choice.exploratory, group)
        if d.deferred:
            space.stats.deferred += 1
            space.pending.add_deferred(d)
        else:
            self._close_evicted(space, space.pending.add(d))
        if idempotent:
            self._recent_selects[key] = choice
            if len(self._recent_selects) > RECENT_SELECTS_KEPT:
                self._recent_selects.popitem(last=False)
        return choice

    def _close_evicted(self, space: SpaceRuntime, evicted: list[Decision]) -> None:
        if evicted:
            log.warning("pending decisions evicted by max_pending_decisions", extra={"count": len(evicted)})
            space.stats.expired += len(evicted)
            task = asyncio.create_task(self._close_missing(space, evicted))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    # -- activation --------------------------------------------------------------------------------
    async def activate(self, event_id: str, *, installation_id: str = "", owner: str = "") -> ActivateResult:
        """A deferred decision is in use now: count it and open its feedback window, durably (SQLite
        commit, Redis script) before the answer. A repeated Activate answers the first one's window."""
        check_event_id(event_id)
        if installation_id:
            check_installation_id(installation_id)
        d, space = self._find_pending(event_id)
        if d is None or d.awaiting_activation:
            if event_id in self.unsaved:
                await self.flush_unsaved()  # the activation must not reach the store before the decision
            # Another replica may have activated it (or made it): the store knows.
            d = await asyncio.to_thread(self.store.get_decision, event_id) or d
            if d is None:
                self._unknown_event(event_id)
            assert d is not None
            space = self.space(d.space)
        assert space is not None
        self._check_owner(d, owner)
        made_for = d.prefs.get("installation_id", "")
        if installation_id and made_for and installation_id != made_for:
            raise OtherInstallation(
                f"event {event_id} was selected for another installation", event_id=event_id
            )
        if not d.deferred:
            raise NotDeferred(
                f"event {event_id} was not selected with defer_activation: it counts since its Select",
                event_id=event_id,
            )
        if d.activated:
            self._track_activated(space, d, newest=False)
            return ActivateResult(d, already_activated=True)
        now = time.time()
        if now > d.deadline:
            raise ActivationExpired(
                f"event {event_id} could be activated until {d.deadline:.3f}", event_id=event_id
            )
        act = await self._await(self.store.submit_activation(d, now, now + space.cfg.reward_window_s))
        activated = dataclasses.replace(d, activated=act.activated, deadline=act.deadline)
        self._track_activated(space, activated, newest=act.fresh)
        if act.fresh:
            space.stats.activated += 1
        return ActivateResult(activated, already_activated=not act.fresh)

    def _track_activated(self, space: SpaceRuntime, d: Decision, *, newest: bool) -> None:
        """Hold an activated decision as pending here, so that this replica closes its window (if another
        replica holds it too, the close's claim keeps one of them; both compute it from the same store)."""
        if d.deadline > time.time():
            self._close_evicted(space, space.pending.activated(d, newest=newest))
        elif d.event_id in space.pending:
            space.pending.take(d.event_id)  # its window passed meanwhile: closed on the next sweep
            space.pending.retry_default_later(d)

    # -- feedback ----------------------------------------------------------------------------------
    async def feedback(
        self,
        event_id: str,
        reward: float | None = None,
        measurements: Mapping[str, float] | None = None,
        *,
        failed: bool = False,
        failure_reason: str = "",
        owner: str = "",
        request_id: str = "",
    ) -> FeedbackResult:
        """`failed`: the model did not run on the device (its QoE is the space's minimum); `failure_reason`
        one of qoe_policy.FAILURE_REASONS or "". `request_id` identifies this Feedback in a space that
        aggregates rewards (a retry with the same one is DUPLICATE); elsewhere the event id does."""
        check_event_id(event_id)
        if len(request_id) > MAX_REQUEST_ID:
            raise LimitExceeded(f"request_id is longer than {MAX_REQUEST_ID} characters", field="request_id")
        measurements = measurements or {}
        d, space = self._find_pending(event_id)
        waiting = d is not None and d.awaiting_activation
        if waiting:
            d = None  # another replica may have activated it: the store knows
        closure = None
        if d is None:
            inflight = self._inflight.get(event_id)
            if inflight is not None:
                result: FeedbackResult = await asyncio.shield(inflight)
                return FeedbackResult(True, result.reward)
            d = await asyncio.to_thread(self.store.get_decision, event_id)
            if d is None:
                self._unknown_event(event_id)
            assert d is not None
            space = self.space(d.space)
            if waiting and d.activated:  # activated on another replica: close its window here too
                self._track_activated(space, d, newest=False)
            closure = await asyncio.to_thread(self.store.closure, event_id)
            if closure is not None and space.cfg.reward_aggregation == "first":
                return self._closed(space, event_id, closure)
        assert space is not None
        self._check_owner(d, owner)
        if d.awaiting_activation:
            raise NotActivated(
                f"event {event_id} was selected with defer_activation and is not activated yet: call "
                "Activate once the model is in use",
                event_id=event_id,
            )
        if space.cfg.reward_aggregation != "first":
            key = request_id or _content_key(reward, measurements, failed, failure_reason)
            return await self._observe(
                space, d, closure, key, reward, measurements, failed=failed, failure_reason=failure_reason
            )
        if time.time() > d.deadline:
            raise ExpiredEventError(
                f"the feedback window of event {event_id} closed at {d.deadline:.3f}", event_id=event_id
            )
        value, record = self._feedback_value(space, d, reward, measurements, failed, failure_reason)
        if event_id in self.unsaved:
            await self.flush_unsaved()  # its feedback must not reach the log before the decision does
        space.pending.take(event_id)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[event_id] = fut
        try:
            try:
                await self._append_reward(space, d, value, ev.FEEDBACK, measurements, record, failed)
                result = FeedbackResult(False, value)
                space.stats.feedback += 1
            except DuplicateEvent as dup:
                # Another replica (or a default reward) took this event id first: that answer counts.
                result = self._closed(space, event_id, dup.closure)
        except BaseException as e:
            if time.time() <= d.deadline:
                space.pending.put_back(d)  # not acknowledged: the device may retry
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters get it through shield
            raise
        finally:
            self._inflight.pop(event_id, None)
        fut.set_result(result)
        return result

    def _feedback_value(
        self,
        space: SpaceRuntime,
        d: Decision,
        reward: float | None,
        measurements: Mapping[str, float],
        failed: bool,
        failure_reason: str,
    ) -> tuple[float, dict[str, Any] | None]:
        """The checked Feedback's QoE, and the measurement record for the log (None when it has none)."""
        qoe_policy.check_feedback(space.qoe, measurements, failed, failure_reason)
        if failed:
            if reward is not None:
                raise InvalidReward(
                    "failed: a model that did not run has the space's minimum QoE; send no reward",
                    field="reward",
                )
            value = space.qoe.reward_min
        else:
            value = space.reward_for(d, reward, measurements)
        # The raw measurements (and the decision's preferences) go into the log, so replay teaches the
        # learner exactly what the live server did.
        record = (
            qoe_policy.feedback_record(measurements, failed, failure_reason, d.prefs)
            if measurements or failed
            else None
        )
        return value, record

    async def _observe(
        self,
        space: SpaceRuntime,
        d: Decision,
        closure: ev.Closure | None,
        key: str,
        reward: float | None,
        measurements: Mapping[str, float],
        *,
        failed: bool,
        failure_reason: str,
    ) -> FeedbackResult:
        """A Feedback in a space that aggregates rewards: recorded durably (ACCEPTED), learned with the
        others when the window closes; a retry of a recorded one (same key) is DUPLICATE with its reward."""
        if closure is not None or time.time() > d.deadline:
            observed = (await asyncio.to_thread(self.store.observations, space.name, [d.event_id]))[
                d.event_id
            ]
            earlier = next((o for o in observed if o.key == key), None)
            if earlier is not None:
                space.stats.duplicates += 1
                return FeedbackResult(True, earlier.reward)
            raise ExpiredEventError(
                f"the feedback window of event {d.event_id} closed at {d.deadline:.3f}", event_id=d.event_id
            )
        value, _ = self._feedback_value(space, d, reward, measurements, failed, failure_reason)
        if d.event_id in self.unsaved:
            await self.flush_unsaved()  # its observations must not reach the store before the decision
        o = Observation(d.event_id, key, value, dict(measurements), failed, failure_reason, time.time())
        try:
            await self._await(self.store.submit_observation(space.name, o, d.deadline))
        except DuplicateObservation as dup:
            space.stats.duplicates += 1
            return FeedbackResult(True, dup.observation.reward)
        except DuplicateEvent:
            raise ExpiredEventError(
                f"the feedback window of event {d.event_id} closed", event_id=d.event_id
            ) from None
        space.stats.feedback += 1
        return FeedbackResult(False, value)

    def _closed(self, space: SpaceRuntime, event_id: str, closure: ev.Closure) -> FeedbackResult:
        """The answer for a decision that is closed already: DUPLICATE with the reward that was applied."""
        if closure.kind in (ev.DEFAULT_REWARD, ev.NO_FEEDBACK):
            raise ExpiredEventError(
                f"the feedback window of event {event_id} closed; the default reward was applied",
                event_id=event_id,
            )
        space.stats.duplicates += 1
        return FeedbackResult(True, closure.reward)

    def _unknown_event(self, event_id: str) -> None:
        """NOT_FOUND, unless the id is young enough to be a decision another replica made while the shared
        store was down and has not written yet (then: retry)."""
        made = event_id_time(event_id)
        now = time.time()
        window = max(s.cfg.reward_window_s for s in self.spaces.values())
        if self.store.shared and made is not None and now - window <= made <= now + 60.0:
            raise DecisionNotYetStored(
                f"event id {event_id!r} is not in the store (yet): if another replica answered it while the "
                "store was down, it is written once the store is back; retry",
                event_id=event_id,
            )
        raise UnknownEventError(f"unknown event id {event_id!r}", field="event_id")

    def _find_pending(self, event_id: str) -> tuple[Decision | None, SpaceRuntime | None]:
        for space in self.spaces.values():
            d = space.pending.get(event_id)
            if d is not None:
                return d, space
        return None, None

    @staticmethod
    def _check_owner(d: Decision, owner: str) -> None:
        if d.owner and d.owner != owner:
            raise PermissionError_("this decision was made for another token", event_id=d.event_id)

    async def _append_reward(
        self,
        space: SpaceRuntime,
        d: Decision,
        reward: float,
        kind: str,
        measurements: Mapping[str, float] | None = None,
        record: Mapping[str, Any] | None = None,
        failed: bool = False,
    ) -> int:
        e = self._reward_event(space, d, reward, kind, measurements, record, failed)
        return await self._await(self.store.submit_event(e))

    @staticmethod
    def _reward_event(
        space: SpaceRuntime,
        d: Decision,
        reward: float,
        kind: str,
        measurements: Mapping[str, float] | None = None,
        record: Mapping[str, Any] | None = None,
        failed: bool = False,
        extra: Mapping | None = None,
    ) -> LogEvent:
        """The event's payload is one JSON object: the report's outcome (group, device class, latency,
        failed: holdout.outcome_payload) and, when the device measured anything or failed, the learner's
        measurement record (qoe_policy.feedback_record, versioned) that replay teaches exactly; `extra`
        (an aggregated close: how it was aggregated) is added as is. Encoded once, keys sorted."""
        payload = outcome_payload(d, measurements or {}, failed)
        payload.update(record or {})
        payload.update(extra or {})
        return LogEvent(
            space.name,
            kind,
            event_id=d.event_id,
            model_id=d.model_id,
            x=d.x,
            reward=reward,
            payload=payload_json(payload),
            created=time.time(),
        )

    # -- admin -------------------------------------------------------------------------------------
    @staticmethod
    def _model_event(space: str, kind: str, model: Model) -> LogEvent:
        return LogEvent(
            space, kind, model_id=model.id, payload=json.dumps(model.to_dict()).encode(), created=time.time()
        )

    async def _append(self, e: LogEvent) -> int:
        return await self._await(self.store.submit_event(e))

    async def add_model(self, space_name: str, model: Model) -> Model:
        space = self.space(space_name)
        check_feature_names(model, space.model_schema)
        check_model_fields(model.version, model.artifact_uri, model.metadata)
        space.validate_add(model)
        await self._append(self._model_event(space_name, ev.ADD_MODEL, model))
        return space.model(model.id)

    async def update_model(
        self,
        space_name: str,
        model_id: str,
        *,
        version: str | None,
        artifact_uri: str | None,
        metadata: Mapping[str, str] | None,
        features: Mapping[str, float] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Model:
        space = self.space(space_name)
        payload = self._model_change(space, model_id, version, artifact_uri, metadata, features, labels)
        del payload["id"]
        await self._append(
            LogEvent(
                space_name,
                ev.UPDATE_MODEL,
                model_id=model_id,
                payload=json.dumps(payload).encode(),
                created=time.time(),
            )
        )
        return space.model(model_id)

    @staticmethod
    def _model_change(
        space: SpaceRuntime,
        model_id: str,
        version: str | None,
        artifact_uri: str | None,
        metadata: Mapping[str, str] | None,
        features: Mapping[str, float] | None,
        labels: Mapping[str, str] | None,
    ) -> dict:
        """The checked change of an UpdateModel: version, artifact_uri and metadata; features and labels
        may only be repeated, never changed."""
        current = space.model(model_id)
        if features and dict(features) != current.features:
            raise InvalidModel(
                f"model {model_id!r}: features are fixed once added; add a new model instead",
                field="model.features",
            )
        if labels and dict(labels) != current.labels:
            raise InvalidModel(
                f"model {model_id!r}: labels are fixed once added; add a new model instead",
                field="model.labels",
            )
        check_model_fields(version, artifact_uri, metadata)
        return {
            "id": model_id,
            "version": version,
            "artifact_uri": artifact_uri,
            "metadata": dict(metadata) if metadata is not None else None,
        }

    async def import_models(
        self, space_name: str, add: Sequence[Model], update: Sequence[Model]
    ) -> list[Model]:
        """Add and update many models as one log event: checked as a whole first, applied as a whole."""
        space = self.space(space_name)
        if not add and not update:
            raise InvalidArgument("nothing to import: add and update are both empty", field="add")
        if len(add) + len(update) > MAX_IMPORT_MODELS:
            count = len(add) + len(update)
            raise LimitExceeded(
                f"{count} models in one import, the limit is {MAX_IMPORT_MODELS}", field="add"
            )
        seen: set[str] = set()
        for i, model in enumerate(add):
            if model.id in seen:
                raise DuplicateModelError(f"model {model.id!r} is twice in the import", field=f"add[{i}]")
            seen.add(model.id)
            check_feature_names(model, space.model_schema)
            check_model_fields(model.version, model.artifact_uri, model.metadata)
            space.validate_add(model)
        changes = []
        for i, model in enumerate(update):
            if model.id in seen:
                raise DuplicateModelError(f"model {model.id!r} is twice in the import", field=f"update[{i}]")
            seen.add(model.id)
            changes.append(
                self._model_change(
                    space, model.id, model.version, model.artifact_uri, model.metadata, model.features,
                    model.labels,
                )
            )  # fmt: skip
        payload = {"add": [m.to_dict() for m in add], "update": changes}
        seq = await self._append(
            LogEvent(space_name, ev.IMPORT_MODELS, payload=json.dumps(payload).encode(), created=time.time())
        )
        rejected = space.rejected_imports.pop(seq, None)
        if rejected is not None:
            raise ModelExists(f"the import conflicts with a change made meanwhile: {rejected}", field="add")
        return [space.model(m.id) for m in (*add, *update)]

    async def retire_model(self, space_name: str, model_id: str) -> Model:
        space = self.space(space_name)
        space.model(model_id)
        await self._append(LogEvent(space_name, ev.RETIRE_MODEL, model_id=model_id, created=time.time()))
        return space.model(model_id)

    async def reset(self, space_name: str) -> str:
        space = self.space(space_name)
        await self._append(LogEvent(space_name, ev.RESET, created=time.time()))
        await self.snapshot(space_name)
        return space.policy_version

    async def import_state(self, space_name: str, blob: bytes) -> str:
        space = self.space(space_name)
        space.validate_import(blob)
        await self._append(LogEvent(space_name, ev.IMPORT, payload=blob, created=time.time()))
        await self.snapshot(space_name)
        return space.policy_version

    def export_state(self, space_name: str) -> tuple[bytes, str]:
        return self.space(space_name).export_state()

    def report(self, space_name: str) -> dict:
        return self.space(space_name).report(time.time())

    async def lift_guardrail(self, space_name: str, model_id: str, device_class: str) -> bool:
        """Append a lift event (every replica lifts at its log position); False if nothing was withdrawn."""
        space = self.space(space_name)
        if not model_id:
            raise InvalidArgument("model_id is required", field="model_id")
        if not device_class:
            raise InvalidArgument("device_class is required", field="device_class")
        space.model(model_id)  # NOT_FOUND MODEL_UNKNOWN for a model the space never had
        if not space.is_withdrawn(model_id, device_class):
            return False
        payload = json.dumps({"device_class": device_class}).encode()
        await self._append(
            LogEvent(space_name, ev.LIFT_GUARDRAIL, model_id=model_id, payload=payload, created=time.time())
        )
        return True

    async def arm_stats(self, space_name: str, model_id: str | None = None) -> list[dict]:
        space = self.space(space_name)
        if model_id == "":
            raise InvalidArgument("model_id is set but empty; leave it unset for every arm", field="model_id")
        selections = await asyncio.to_thread(self.store.selection_counts, space_name)
        return space.arm_stats(model_id, selections)
