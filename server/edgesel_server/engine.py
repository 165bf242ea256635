"""The engine: every space, the store, and the Select/Feedback/admin logic the gRPC servicers call.

Kept free of gRPC so that it reads as the product's rules; `servicers.py` only translates messages and maps
the exceptions below onto status codes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from edgesel_server import qoe_policy
from edgesel_server.catalog import CatalogError, Model, UnknownModelError
from edgesel_server.config import ServerConfig
from edgesel_server.core import QoeModel
from edgesel_server.futures import LoopBridge
from edgesel_server.space import Choice, SpaceRuntime, normalize_weights
from edgesel_server.store import Store, open_store
from edgesel_server.store import base as ev
from edgesel_server.store.base import Decision, DuplicateEvent, LogEvent

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5
MAX_REQUEST_ID = 128
RECENT_SELECTS_KEPT = 10_000  # request ids remembered for idempotent retries of Select
PURGE_INTERVAL_S = 600.0


class UnknownSpaceError(LookupError):
    pass


class UnknownEventError(LookupError):
    pass


class ExpiredEventError(RuntimeError):
    pass


class PermissionError_(RuntimeError):
    """The caller may not give feedback for this decision (bound to another token)."""


@dataclass
class FeedbackResult:
    duplicate: bool
    reward: float


class Engine:
    def __init__(self, cfg: ServerConfig, store: Store | None = None) -> None:
        self.cfg = cfg
        self.spaces = {s.name: SpaceRuntime(s, cfg) for s in cfg.spaces}
        self.store = store or open_store(
            cfg.store, cfg.data_dir, durability=cfg.durability, retention_s=cfg.decision_retention_s
        )
        # Feedbacks being written right now, so a concurrent duplicate waits for the first one's fate.
        self._inflight: dict[str, asyncio.Future] = {}
        self._side_tasks: set[asyncio.Task] = set()
        self._bridge: LoopBridge | None = None
        self._recent_selects: OrderedDict[tuple[str, str, str], Choice] = OrderedDict()
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, rebuild every space from its snapshot + log, and reload pending decisions."""
        self.store.open(self._apply)
        now = time.time()
        for space in self.spaces.values():
            snap = self.store.latest_snapshot(space.name)
            space.restore(snap)
            replayed = 0
            for e in self.store.events_after(space.name, snap.seq if snap else 0):
                space.apply(e)
                replayed += 1
            missing = [m for m in space.cfg.models if m.id not in space.catalog]
            for m in missing:
                # Replicas starting together race to add the configured models; the log keeps one add per
                # model, and one that another replica added meanwhile is simply there already.
                if m.id in space.catalog:
                    continue
                try:
                    space.validate_add(m)
                except CatalogError:
                    if m.id in space.catalog:
                        continue
                    raise
                self.store.submit_event(self._model_event(space.name, ev.ADD_MODEL, m)).result()
            # Decisions still open, and those whose window closed while this process was down (up to one
            # window ago): the latter get the missing-feedback rule on the first sweep.
            for d in self.store.open_decisions(space.name, now - space.cfg.reward_window_s):
                if d.deadline > now:
                    space.remember(d)
                else:
                    space.stats["expired"] += 1
                    space.default_retry.append(d)
            log.info(
                "space ready",
                extra={
                    "space": space.name,
                    "snapshot_seq": snap.seq if snap else 0,
                    "replayed": replayed,
                    "models_added": len(missing),
                    "pending": len(space.pending),
                    "seq": space.applied_seq,
                },
            )
        self.started = True

    def _apply(self, e: LogEvent) -> None:
        space = self.spaces.get(e.space)
        if space is None:
            log.warning("log event for a space not in the config is skipped", extra={"space": e.space})
            return
        space.apply(e)

    async def run_background(self) -> None:
        """Expire decisions, snapshot, purge old decisions; runs until cancelled."""
        last_purge = 0.0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.time()
            # A failing store (disk full, backend down) must not end this loop: retry on the next sweep.
            try:
                for space in self.spaces.values():
                    await self._expire(space, now)
                    if space.since_snapshot >= self.cfg.snapshot_every:
                        await self.snapshot(space.name)
                if now - last_purge > PURGE_INTERVAL_S:
                    last_purge = now
                    n = await asyncio.to_thread(
                        self.store.purge_decisions, now - self.cfg.decision_retention_s
                    )
                    if n:
                        log.info("purged old decisions", extra={"count": n})
            except ev.StoreUnavailable as e:
                log.warning("background pass skipped: the store is unavailable", extra={"error": str(e)})

    async def _expire(self, space: SpaceRuntime, now: float) -> None:
        retry, space.default_retry = space.default_retry, []
        expired = space.pop_expired(now)
        space.stats["expired"] += len(expired)
        await self._close_missing(space, retry + expired)

    async def _close_missing(self, space: SpaceRuntime, decisions: list[Decision]) -> None:
        """Decisions whose window passed without feedback: learn the default reward, or drop them."""
        if not decisions or space.cfg.on_missing_feedback != "default":
            return
        # All at once: they share group commits instead of paying one fsync each.
        results = await asyncio.gather(
            *(self._append_reward(space, d, space.cfg.default_reward, ev.DEFAULT_REWARD) for d in decisions),
            return_exceptions=True,
        )
        for d, r in zip(decisions, results, strict=True):
            if isinstance(r, ev.StoreUnavailable):
                space.default_retry.append(d)  # not lost: tried again on the next sweep
            elif isinstance(r, DuplicateEvent):
                pass  # real feedback (or another replica's default) got there first
            elif isinstance(r, BaseException):
                log.error("default reward failed", extra={"event_id": d.event_id, "error": repr(r)})
            else:
                space.stats["defaults_applied"] += 1

    async def snapshot(self, space_name: str) -> int:
        space = self.spaces[space_name]
        snap = space.snapshot()
        await asyncio.to_thread(self.store.save_snapshot, snap)
        return snap.seq

    async def close(self) -> None:
        for space in self.spaces.values():
            if space.needs_final_snapshot:
                try:
                    await self.snapshot(space.name)
                except ev.StoreUnavailable as e:
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
                f"unknown space {name!r}; this server has: {', '.join(self.spaces)}"
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
    ) -> Choice:
        """`owner` binds the decision's feedback to a token (or ""); `caller` and `request_id` make a retried
        Select idempotent."""
        space = self.space(space_name)
        if len(request_id) > MAX_REQUEST_ID:
            raise ValueError(f"request_id is longer than {MAX_REQUEST_ID} characters")
        key = (space_name, caller, request_id)
        labels = labels or {}
        if len(features) + len(labels) > self.cfg.max_features:
            raise ValueError(
                f"{len(features) + len(labels)} device features and labels is more than the limit of "
                f"{self.cfg.max_features}"
            )
        if len(eligible) > self.cfg.max_eligible:
            raise ValueError(
                f"{len(eligible)} eligible models is more than the limit of {self.cfg.max_eligible}"
            )
        prefs: dict = {}
        if latency_budget_ms is not None:
            if not math.isfinite(latency_budget_ms) or latency_budget_ms <= 0:
                raise ValueError(f"latency_budget_ms must be a positive number, got {latency_budget_ms}")
            prefs["latency_budget_ms"] = latency_budget_ms
        if qoe_weights:
            prefs["qoe_weights"] = normalize_weights(qoe_weights)
        x = space.device_schema.vector(features, labels)
        if request_id:
            # A retried Select (same caller, request id and device, e.g. after a lost reply) gets the decision
            # it already made instead of a second one, while that decision still waits for feedback.
            earlier = self._recent_selects.get(key)
            if (earlier is not None and earlier.decision.event_id in space.pending
                    and np.array_equal(earlier.decision.x, x)):  # fmt: skip
                return earlier
        ids = space.eligible(eligible, max_model_size_mb)
        choice = space.choose(x, ids, prefs=prefs, owner=owner, include_ranking=include_ranking)
        d = choice.decision
        try:
            await self._await(self.store.submit_decision(d))
        except ev.StoreUnavailable as e:
            # Selection keeps serving from the local state; the decision lives in memory only.
            log.warning("decision not persisted", extra={"event_id": d.event_id, "error": str(e)})
        evicted = space.remember(d)
        if evicted:
            log.warning("pending decisions evicted by max_pending_decisions", extra={"count": len(evicted)})
            space.stats["expired"] += len(evicted)
            task = asyncio.create_task(self._close_missing(space, evicted))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
        if request_id:
            self._recent_selects[key] = choice
            if len(self._recent_selects) > RECENT_SELECTS_KEPT:
                self._recent_selects.popitem(last=False)
        return choice

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
    ) -> FeedbackResult:
        """`failed`: the model did not run on the device (its QoE is the space's minimum); `failure_reason`
        one of qoe_policy.FAILURE_REASONS or ""."""
        if not event_id or len(event_id) > 64:
            raise ValueError("event_id is empty or too long")
        measurements = measurements or {}
        d, space = self._find_pending(event_id)
        if d is None:
            inflight = self._inflight.get(event_id)
            if inflight is not None:
                result: FeedbackResult = await asyncio.shield(inflight)
                return FeedbackResult(True, result.reward)
            d = await asyncio.to_thread(self.store.get_decision, event_id)
            if d is None:
                raise UnknownEventError(f"unknown event id {event_id!r}")
            space = self.space(d.space)
            closed_by = await asyncio.to_thread(self.store.feedback_kind, event_id)
            if closed_by == ev.FEEDBACK:
                space.stats["duplicates"] += 1
                return FeedbackResult(True, math.nan)
            if closed_by == ev.DEFAULT_REWARD:
                raise ExpiredEventError(
                    f"the feedback window of event {event_id} closed; the default reward was applied"
                )
        assert space is not None
        self._check_owner(d, owner)
        if time.time() > d.deadline:
            raise ExpiredEventError(f"the feedback window of event {event_id} closed at {d.deadline:.3f}")
        qoe_policy.check_feedback(space.qoe, measurements, failed, failure_reason)
        if failed:
            if reward is not None:
                raise ValueError(
                    "failed: a model that did not run has the space's minimum QoE; send no reward"
                )
            value = space.qoe.reward_min
        else:
            value = space.reward_for(d, reward, measurements)
        payload = (
            qoe_policy.feedback_payload(measurements, failed, failure_reason, d.prefs)
            if measurements or failed
            else b""
        )
        space.pending.pop(event_id, None)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[event_id] = fut
        try:
            await self._append_reward(space, d, value, ev.FEEDBACK, payload)
            result = FeedbackResult(False, value)
            space.stats["feedback"] += 1
        except DuplicateEvent:
            result = FeedbackResult(True, value)
            space.stats["duplicates"] += 1
        except BaseException as e:
            if time.time() <= d.deadline:
                space.pending[event_id] = d  # not acknowledged: the device may retry
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters get it through shield
            raise
        finally:
            self._inflight.pop(event_id, None)
        fut.set_result(result)
        return result

    def _find_pending(self, event_id: str) -> tuple[Decision | None, SpaceRuntime | None]:
        for space in self.spaces.values():
            d = space.pending.get(event_id)
            if d is not None:
                return d, space
        return None, None

    @staticmethod
    def _check_owner(d: Decision, owner: str) -> None:
        if d.owner and d.owner != owner:
            raise PermissionError_("this decision was made for another token")

    async def _append_reward(
        self, space: SpaceRuntime, d: Decision, reward: float, kind: str, payload: bytes = b""
    ) -> int:
        """`payload`: the measurement record (qoe_policy.feedback_payload) the learner replays, or b""."""
        e = LogEvent(
            space.name,
            kind,
            event_id=d.event_id,
            model_id=d.model_id,
            x=d.x,
            reward=reward,
            payload=payload,
            created=time.time(),
        )
        return await self._await(self.store.submit_event(e))

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
        space.validate_add(model)
        await self._append(self._model_event(space_name, ev.ADD_MODEL, model))
        return space.catalog.get(model.id)

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
        current = space.catalog.get(model_id)
        if features and dict(features) != current.features:
            raise ValueError(f"model {model_id!r}: features are fixed once added; add a new model instead")
        if labels and dict(labels) != current.labels:
            raise ValueError(f"model {model_id!r}: labels are fixed once added; add a new model instead")
        payload = {
            "version": version,
            "artifact_uri": artifact_uri,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        await self._append(
            LogEvent(
                space_name,
                ev.UPDATE_MODEL,
                model_id=model_id,
                payload=json.dumps(payload).encode(),
                created=time.time(),
            )
        )
        return space.catalog.get(model_id)

    async def retire_model(self, space_name: str, model_id: str) -> Model:
        space = self.space(space_name)
        space.catalog.get(model_id)
        await self._append(LogEvent(space_name, ev.RETIRE_MODEL, model_id=model_id, created=time.time()))
        return space.catalog.get(model_id)

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
        space = self.space(space_name)
        with space.lock:
            return space.bandit.to_bytes(), space.policy_version

    def arm_stats(self, space_name: str, model_id: str | None = None) -> list[dict]:
        space = self.space(space_name)
        with space.lock:
            models = [space.catalog.get(model_id)] if model_id else space.catalog.models(include_retired=True)
            out = []
            for m in models:
                if m.id not in space.bandit:
                    raise UnknownModelError(f"model {m.id!r} has no learned state")
                c = space.counters.get(m.id)
                if isinstance(space.bandit, QoeModel):
                    # Several targets, no single θ: the counters say how often the arm was learned from.
                    n_updates, theta_norm = (c.n_updates if c else 0), 0.0
                else:
                    st = space.bandit.arm_stats(m.id)
                    n_updates, theta_norm = int(st["n_updates"]), float(np.linalg.norm(st["theta"]))
                out.append(
                    {
                        "model_id": m.id,
                        "retired": m.retired,
                        "n_selections": c.n_selections if c else 0,
                        "n_updates": n_updates,
                        "reward_sum": c.reward_sum if c else 0.0,
                        "mean_reward": (c.reward_sum / c.n_updates) if c and c.n_updates else 0.0,
                        "theta_norm": theta_norm,
                        "last_update": c.last_update if c else 0.0,
                    }
                )
            return out
