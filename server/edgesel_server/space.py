"""One selection space at run time: schema, catalog, learned state, pending decisions.

Threads: Select/Feedback logic runs on the asyncio loop; committed log events are applied by the store's
writer (or tailer) thread through `apply`. `apply` and snapshotting hold `self.lock`; the loop never needs
it on the hot path because the Bandit is itself thread-safe and the catalog's list of active ids is
replaced, never mutated, when the catalog changes.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgesel_server import qoe_policy
from edgesel_server.catalog import Catalog, CatalogError, Model, UnknownModelError
from edgesel_server.config import ServerConfig, SpaceConfig
from edgesel_server.core import Bandit, QoeModel, Selection, SnapshotError, uses_model_features
from edgesel_server.qoe import MEASUREMENTS
from edgesel_server.schema import FeatureSchema
from edgesel_server.store import base as ev
from edgesel_server.store.base import Decision, LogEvent, Snapshot

log = logging.getLogger(__name__)

# Names a device may use for QoE weight overrides, mapped onto the QoE function's measurement names.
WEIGHT_ALIASES = {"rating": "user_rating", "latency": "latency_ms", "energy": "energy_mj"}


class NoEligibleModel(LookupError):
    """Nothing in the catalog is eligible for this request."""


@dataclass
class ArmCounters:
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


def new_event_id() -> str:
    # 128 random bits: an event id cannot be guessed, so only the device that got it can give feedback.
    return secrets.token_hex(16)


def normalize_weights(weights: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in weights.items():
        name = WEIGHT_ALIASES.get(k, k)
        if name not in MEASUREMENTS:
            known = ", ".join(sorted(set(MEASUREMENTS) | set(WEIGHT_ALIASES)))
            raise ValueError(f"unknown qoe weight {k!r}; known: {known}")
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"qoe weight {k!r} = {v} must be finite and >= 0")
        out[name] = float(v)
    return out


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
        self.counters: dict[str, ArmCounters] = {}
        self.active: tuple[str, ...] = ()
        self.applied_seq = 0
        self.since_snapshot = 0
        # Decisions advance the core's generator (forced sampling, Thompson draws): a final snapshot after
        # them lets a restarted space continue the same random stream.
        self.decided_since_snapshot = False
        self.last_snapshot_time = 0.0
        self.pending: dict[str, Decision] = {}
        self.default_retry: list[Decision] = []  # expired decisions whose default reward could not be stored
        self.stats = {
            "decisions": 0,
            "feedback": 0,
            "duplicates": 0,
            "expired": 0,
            "exploratory": 0,
            "defaults_applied": 0,
        }

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
            bandit = self._state_from_bytes(snap.state)
            self._check_compatible(bandit)
            self.bandit = bandit
            self.applied_seq = snap.seq
            self.last_snapshot_time = snap.created
            self._refresh_active()

    def _state_from_bytes(self, blob: bytes) -> Bandit | QoeModel:
        if self.learns_measurements:
            return QoeModel.from_bytes(blob)
        return Bandit.from_bytes(blob, forced_sampling=self.cfg.policy.forced_sampling)

    def _choose_qoe(self, model: QoeModel, x: np.ndarray, arms: list[str] | None, prefs: dict) -> QoeDecision:
        """qoe_model's decision under the request's own latency budget and weights: the highest optimistic
        QoE (ties to the smallest id; deterministic, propensity 1), or the baseline while conservative mode
        holds exploration back."""
        request = {"latency_budget_ms": prefs.get("latency_budget_ms"), "weights": prefs.get("qoe_weights")}
        ids, mean, bonus, total = model.score(x, arms, **request)
        best = float(total.max())
        ties = np.flatnonzero(total == best)
        i = int(ties[0]) if len(ties) == 1 else min(ties, key=lambda j: ids[j])
        if self.cfg.policy.baseline_model is not None:
            i = ids.index(model.select(x, arms, **request)[0])
        return QoeDecision(
            ids[i], float(mean[i]), float(bonus[i]), float(total[i]), 1.0, bool(mean[i] < mean.max()),
            (ids, mean, bonus, total),
        )  # fmt: skip

    def _check_compatible(self, bandit: Bandit | QoeModel) -> None:
        want = self._new_bandit()
        # Learned state must match; settings (alpha, forced_sampling) are the config's.
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

    # -- the log -----------------------------------------------------------------------------------
    def apply(self, e: LogEvent) -> None:
        """Apply one committed event. Called in log order, by one thread at a time."""
        with self.lock:
            if e.kind in (ev.FEEDBACK, ev.DEFAULT_REWARD):
                assert e.x is not None
                if isinstance(self.bandit, QoeModel):
                    qoe_policy.learn(self.bandit, e.model_id, e.x, e.reward, e.payload)
                else:
                    self.bandit.update(e.model_id, e.x, e.reward)
                c = self.counters.setdefault(e.model_id, ArmCounters())
                c.n_updates += 1
                c.reward_sum += e.reward
                c.last_update = e.created
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
            elif e.kind == ev.RETIRE_MODEL:
                self.catalog.retire(e.model_id)
            elif e.kind == ev.RESET:
                bandit = self._new_bandit()
                for m in self.catalog.models(include_retired=True):
                    self._add_arm(bandit, m.id)
                self.bandit = bandit
                self.counters = {m.id: ArmCounters() for m in self.catalog.models(include_retired=True)}
            elif e.kind == ev.IMPORT:
                bandit = self._state_from_bytes(e.payload)
                for m in self.catalog.models(include_retired=True):
                    if m.id not in bandit:
                        self._add_arm(bandit, m.id)
                self.bandit = bandit
            else:
                raise ValueError(f"unknown event kind {e.kind!r}")
            self._refresh_active()
            self.applied_seq = e.seq
            self.since_snapshot += 1

    def snapshot(self) -> Snapshot:
        with self.lock:
            catalog = [
                {"model": m.to_dict(), "counters": vars(self.counters.get(m.id, ArmCounters()))}
                for m in self.catalog.models(include_retired=True)
            ]
            snap = Snapshot(self.name, self.applied_seq, self.bandit.to_bytes(), catalog, time.time())
            self.since_snapshot = 0
            self.decided_since_snapshot = False
            self.last_snapshot_time = snap.created
            return snap

    # -- decisions ---------------------------------------------------------------------------------
    def eligible(self, requested: Sequence[str], max_model_size_mb: float | None) -> list[str]:
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
                raise ValueError(f"max_model_size_mb must be a positive number, got {max_model_size_mb}")
            ids = [
                m for m in ids if self.catalog.get(m).features.get("file_size_mb", 0.0) <= max_model_size_mb
            ]
            if not ids:
                raise NoEligibleModel(
                    f"no eligible model of space {self.name!r} fits in {max_model_size_mb:g} MB"
                )
        return ids

    def choose(
        self, x: np.ndarray, eligible: list[str], *, prefs: dict, owner: str, include_ranking: bool
    ) -> Choice:
        """Score the eligible arms and pick one; the decision is not stored yet."""
        all_active = len(eligible) == len(self.active) and eligible == list(self.active)
        bandit = self.bandit
        arms = None if all_active and len(bandit) == len(eligible) else eligible
        sel: QoeDecision | Selection
        if isinstance(bandit, QoeModel):
            sel = self._choose_qoe(bandit, x, arms, prefs)
        else:
            # The core makes the whole decision (greedy arm, forced sampling, propensity) with its own
            # generator, which is in the snapshot: a restored space decides exactly as one that never stopped.
            sel = bandit.select(x, arms, with_scores=include_ranking)
        now = time.time()
        decision = Decision(
            event_id=new_event_id(),
            space=self.name,
            model_id=sel.id,
            x=x,
            created=now,
            deadline=now + self.cfg.reward_window_s,
            propensity=sel.propensity,
            expected_qoe=sel.mean,
            bonus=sel.bonus,
            policy_version=self.applied_seq,
            eligible=[] if all_active else list(eligible),
            prefs=prefs,
            owner=owner,
        )
        ranking = []
        if sel.scores is not None:
            ids, mean, bonus, total = sel.scores
            order = sorted(range(len(ids)), key=lambda j: (-total[j], ids[j]))
            ranking = [(ids[j], float(mean[j]), float(bonus[j]), float(total[j])) for j in order]
        self.stats["decisions"] += 1
        self.stats["exploratory"] += int(sel.exploratory)
        self.decided_since_snapshot = True
        self.counters.setdefault(sel.id, ArmCounters()).n_selections += 1
        return Choice(decision, self.catalog.get(sel.id), sel.total, sel.exploratory, ranking)

    def remember(self, d: Decision) -> list[Decision]:
        """Keep a decision pending; returns the oldest ones evicted to respect the pending bound."""
        evicted = []
        while len(self.pending) >= self.server.max_pending_decisions:
            evicted.append(self.pending.pop(next(iter(self.pending))))
        self.pending[d.event_id] = d
        return evicted

    def pop_expired(self, now: float) -> list[Decision]:
        # A space has one reward window, so insertion order is deadline order: stop at the first live one.
        out = []
        for event_id, d in list(self.pending.items()):
            if d.deadline > now:
                break
            out.append(self.pending.pop(event_id))
        return out

    def reward_for(self, d: Decision, reward: float | None, measurements: Mapping[str, float]) -> float:
        if reward is not None:
            return self.qoe.check_reward(reward)
        return self.qoe.reward(
            measurements,
            latency_budget_ms=d.prefs.get("latency_budget_ms"),
            weights=d.prefs.get("qoe_weights"),
        )

    # -- admin -------------------------------------------------------------------------------------
    def validate_add(self, model: Model) -> None:
        if model.retired:
            raise CatalogError("a new model cannot be retired")
        with self.lock:
            self.catalog.validate_new(model)

    def validate_import(self, blob: bytes) -> Bandit | QoeModel:
        bandit = self._state_from_bytes(blob)
        self._check_compatible(bandit)
        unknown = [a for a in bandit.arm_ids() if a not in self.catalog]
        if unknown:
            raise SnapshotError(f"the state has arms that are not in the catalog: {', '.join(unknown[:10])}")
        return bandit
