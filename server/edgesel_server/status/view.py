"""What the status page shows of one space, gathered from the engine into plain data for the renderer.

Durable figures (catalog, arm statistics, the lift report, guardrail events) come from the space, which is
rebuilt from the log on restart; the charts come from the in-memory history (status/history.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgesel_server.errors import StoreUnavailable
from edgesel_server.status.history import HistoryView

if TYPE_CHECKING:
    from edgesel_server.engine import Engine


@dataclass(frozen=True)
class ArmRow:
    model_id: str
    version: str
    retired: bool
    withdrawn_from: tuple[str, ...]  # device classes a guardrail withdrew it from
    n_selections: int  # durable: decisions stored for it
    n_updates: int
    mean_reward: float
    reward_sum: float
    theta_norm: float
    last_update: float  # unix time, 0 = never


@dataclass(frozen=True)
class SpaceStatus:
    name: str
    description: str
    policy: str
    holdout_model: str  # "" without a holdout
    holdout_share: float
    device_class_feature: str  # "" : every device is in class "all"
    applied_seq: int
    pending: int
    arms: list[ArmRow]
    report: dict[str, Any]  # SpaceRuntime.report: lift since start and over the window, guardrails
    history: HistoryView | None
    now: float
    store_error: str = ""  # the store could not be read: durable selection counts are missing


def collect(engine: Engine, name: str, now: float | None = None) -> SpaceStatus:
    """Reads one space (KeyError for an unknown name). Safe from any thread: the space's reads lock."""
    now = time.time() if now is None else now
    space = engine.spaces[name]
    report = space.report(now)
    withdrawn: dict[str, list[str]] = {}
    for w in report["withdrawn"]:
        withdrawn.setdefault(w["model_id"], []).append(w["device_class"])
    models = {m.id: m for m in space.models(include_retired=True)}
    store_error = ""
    try:
        selections = engine.store.selection_counts(name)
    except StoreUnavailable as e:
        selections, store_error = {}, str(e)
    arms = [
        ArmRow(
            model_id=a["model_id"],
            version=models[a["model_id"]].version if a["model_id"] in models else "",
            retired=a["retired"],
            withdrawn_from=tuple(sorted(withdrawn.get(a["model_id"], []))),
            n_selections=a["n_selections"],
            n_updates=a["n_updates"],
            mean_reward=a["mean_reward"],
            reward_sum=a["reward_sum"],
            theta_norm=a["theta_norm"],
            last_update=a["last_update"],
        )
        for a in space.arm_stats(None, selections)
    ]
    cfg = space.cfg
    return SpaceStatus(
        name=name,
        description=cfg.description,
        policy=cfg.policy.kind,
        holdout_model=cfg.holdout.model if cfg.holdout else "",
        holdout_share=cfg.holdout.share if cfg.holdout else 0.0,
        device_class_feature=cfg.report.device_class or "",
        applied_seq=space.applied_seq,
        pending=len(space.pending),
        arms=arms,
        report=report,
        history=space.history.view() if space.history is not None else None,
        now=now,
        store_error=store_error,
    )
