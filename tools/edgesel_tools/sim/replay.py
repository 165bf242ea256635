"""Offline evaluation from a decision log: rejection-sampling replay (Li et al. 2011) and IPS.

The log is JSONL (format in docs/simulator.md, "Decision log"): an optional header, ``arms`` records that
add/remove catalog models with their feature vectors, and ``decision`` records (context vector, eligible arm
ids, chosen arm, propensity, reward). The simulator writes such logs with a uniformly random logging policy
(:func:`write_random_log`); the server will export its own log in the same format.

Replay: walk the log in order; the evaluated policy picks from the logged eligible set; when it agrees with
the logged arm the event is accepted, its reward counted and fed back to the policy, otherwise the event is
skipped. With uniformly random logging the accepted events are distributed exactly as an online run of the
policy, so the mean accepted reward estimates the policy's online per-round value over ~N/K rounds.
IPS, SNIPS, the direct method and doubly robust (`estimators.py`): the same walk, but every event counts
with the target's probability of the logged arm over the logging propensity (unbiased for any known logging
propensities), plus a reward model for DM/DR; every estimate has a bootstrap 95 % confidence interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgesel_tools.sim.estimators import RidgeRewardModel, event_terms
from edgesel_tools.sim.policies import Policy, RandomPolicy, Request, make_learning_policy
from edgesel_tools.sim.scenario import Stream

LOG_FORMAT = "edgesel-decision-log"
LOG_VERSION = 1


class LogError(ValueError):
    """A decision log line is malformed; the message names the line and field."""


@dataclass
class Decision:
    round: int
    context: np.ndarray
    eligible: list[str]
    arm: str
    propensity: float
    reward: float | None
    event_id: str = ""


@dataclass
class ArmChange:
    add: dict[str, list[float]] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- writing


def write_random_log(stream: Stream, out: str | Path | TextIO, seed: int | None = None) -> int:
    """Log a uniformly random policy (propensity 1/|eligible|) on ``stream``; returns the decision count."""
    from edgesel_tools.sim.catalog import MODEL_FEATURE_NAMES
    from edgesel_tools.sim.devices import DEVICE_FEATURE_NAMES
    from edgesel_tools.sim.runner import eligible_lists

    fh: Any = open(out, "w", encoding="utf-8") if isinstance(out, (str, Path)) else out
    try:
        header = {
            "type": "header",
            "format": LOG_FORMAT,
            "version": LOG_VERSION,
            "device_dim": stream.device_dim,
            "model_dim": stream.model_dim,
            "device_features": list(DEVICE_FEATURE_NAMES),
            "model_features": list(MODEL_FEATURE_NAMES),
            "source": f"edgesel-sim {stream.scenario.name!r} seed {stream.seed}, uniform random logging",
        }
        fh.write(json.dumps(header) + "\n")
        col = {a: i for i, a in enumerate(stream.arm_ids)}
        feats = {a: [round(float(v), 6) for v in stream.arm_features[col[a]]] for a in stream.arm_ids}
        fh.write(
            json.dumps({"type": "arms", "add": {m.arm_id: feats[m.arm_id] for m in stream.scenario.models}})
            + "\n"
        )
        changes = dict(stream.change_rounds)
        lists, which = eligible_lists(stream)
        logger = RandomPolicy(seed=stream.seed if seed is None else seed)
        for t in range(stream.rounds):
            ch = changes.get(t)
            if ch is not None:
                fh.write(
                    json.dumps(
                        {"type": "arms", "add": {a: feats[a] for a in ch.add}, "remove": list(ch.remove)}
                    )
                )
                fh.write("\n")
            eligible = lists[which[t]]
            req = Request(t, stream.contexts[t], eligible)
            arm = logger.select(req)
            record = {
                "type": "decision",
                "event_id": f"sim-{t}",
                "round": t,
                "context": [round(float(v), 6) for v in stream.contexts[t]],
                "eligible": eligible,
                "arm": arm,
                "propensity": 1.0 / len(eligible),
                "reward": round(float(stream.reward[t, col[arm]]), 6),
            }
            fh.write(json.dumps(record) + "\n")
        return stream.rounds
    finally:
        if fh is not out:
            fh.close()


# ---------------------------------------------------------------- reading


def _field(rec: dict[str, Any], key: str, lineno: int) -> Any:
    if key not in rec:
        raise LogError(f"line {lineno}: missing field {key!r}")
    return rec[key]


def read_log(lines: Iterable[str]) -> Iterator[dict[str, Any] | Decision | ArmChange]:
    """Parse a log: yields the header dict, ArmChange and Decision records in order."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise LogError(f"line {lineno}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise LogError(f"line {lineno}: a record must be a JSON object")
        kind = rec.get("type", "decision")
        if kind == "header":
            if rec.get("format", LOG_FORMAT) != LOG_FORMAT or rec.get("version", LOG_VERSION) != LOG_VERSION:
                raise LogError(
                    f"line {lineno}: unsupported log format {rec.get('format')!r} v{rec.get('version')}"
                )
            yield rec
        elif kind == "arms":
            add = rec.get("add", {})
            remove = rec.get("remove", [])
            if not isinstance(add, dict) or not isinstance(remove, list):
                raise LogError(
                    f"line {lineno}: 'add' must be an object of arm id -> features, 'remove' a list"
                )
            yield ArmChange(
                {str(k): list(map(float, v or [])) for k, v in add.items()}, [str(a) for a in remove]
            )
        elif kind == "decision":
            ctx = np.asarray(_field(rec, "context", lineno), dtype=np.float64)
            if ctx.ndim != 1 or not np.all(np.isfinite(ctx)):
                raise LogError(f"line {lineno}: 'context' must be a list of finite numbers")
            eligible = _field(rec, "eligible", lineno)
            arm = _field(rec, "arm", lineno)
            if not isinstance(eligible, list) or not eligible or arm not in eligible:
                raise LogError(
                    f"line {lineno}: 'eligible' must be a non-empty list containing 'arm' ({arm!r})"
                )
            p = _field(rec, "propensity", lineno)
            if not isinstance(p, (int, float)) or not 0 < p <= 1:
                raise LogError(f"line {lineno}: 'propensity' must be in (0, 1], got {p!r}")
            r = rec.get("reward")
            if r is not None and (not isinstance(r, (int, float)) or not math.isfinite(r)):
                raise LogError(f"line {lineno}: 'reward' must be a number or null, got {r!r}")
            yield Decision(
                int(rec.get("round", lineno)), ctx, eligible, arm, float(p), r, str(rec.get("event_id", ""))
            )
        else:
            raise LogError(f"line {lineno}: unknown record type {kind!r}")


# ---------------------------------------------------------------- evaluation


@dataclass
class EventResult:
    """What one logged event contributed (written by ``--per-event``)."""

    event_id: str
    round: int
    arm: str  # logged arm
    propensity: float
    reward: float
    target_prob: float  # π_i(a_i): the target's probability of the logged arm
    target_pick: str  # the target's (sampled) pick, used for replay and for updating a learning target
    accepted: bool
    weight: float
    q_logged: float  # q̂_i(a_i)
    ips: float
    dm: float
    dr: float


@dataclass
class ReplayResult:
    policy: str
    events: int  # decisions with a reward that were evaluated
    accepted: int  # events where the target's pick agreed with the log
    replay_value: float | None  # mean reward over accepted events (Li et al. 2011)
    ips_value: float | None
    snips_value: float | None
    dm_value: float | None
    dr_value: float | None
    ci95: dict[str, list[float]]  # bootstrap 95 % intervals of ips / snips / dm / dr
    uniform_logging: bool  # every propensity was 1/|eligible|: replay is unbiased only then
    target_probabilities: str  # "exact" (the target exposes them) or "sampled pick" (one-hot of its draw)
    skipped_unoffered: int = 0  # fixed:ARM with --skip-unoffered: events where ARM was not eligible
    per_event: list[EventResult] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        # Full precision: JSON floats round-trip exactly, so a report can be compared bit for bit.
        return {k: v for k, v in self.__dict__.items() if k != "per_event"}


def target_distribution(policy: Policy, request: Request) -> tuple[str, np.ndarray, bool]:
    """The target's pick, its probabilities over ``request.eligible`` and whether they are exact.

    Policies with a ``distribution`` method (random, ε-greedy, fixed) give their exact probabilities and a
    pick drawn from them; a deterministic policy's distribution is one-hot at its pick, which is exact too
    (UCB policies). Thompson sampling has no closed form: its one-hot sampled pick is used (unbiased over the
    target's own randomness, with more variance), and the result says so."""
    dist = getattr(policy, "distribution", None)
    if dist is not None:
        pick, probs = dist(request)
        return pick, np.asarray(probs, dtype=np.float64), True
    pick = policy.select(request)
    probs = np.array([1.0 if a == pick else 0.0 for a in request.eligible])
    probs /= probs.sum()
    return pick, probs, not getattr(policy, "stochastic", False)


def replay(
    records: Iterable[dict[str, Any] | Decision | ArmChange],
    policy: Policy,
    *,
    skip_unoffered: bool = False,
    reward_model: RidgeRewardModel | None = None,
    bootstrap_resamples: int = 1000,
    seed: int = 0,
) -> ReplayResult:
    """Evaluate ``policy`` on a log with replay, IPS, SNIPS, DM and DR (see :mod:`.estimators`).

    The reward model is fit on every rewarded event of the log first (unless given). A learning target is
    then walked through the log in order and updated on the events where its pick agrees with the logged arm
    (as in replay), so its probabilities at event i are those of the policy trained on the agreeing events
    before i. ``skip_unoffered`` (for ``fixed:ARM``): events whose eligible list lacks ARM are not evaluated
    instead of falling back to the first eligible arm."""
    recs = list(records)
    rewarded = [r for r in recs if isinstance(r, Decision) and r.reward is not None]
    if reward_model is None:
        reward_model = RidgeRewardModel().fit(
            [d.context for d in rewarded],
            [d.arm for d in rewarded],
            [float(d.reward or 0.0) for d in rewarded],
        )
    fixed_arm = policy.name.split(":", 1)[1] if policy.name.startswith("fixed:") else None
    accepted = skipped = 0
    total = 0.0
    uniform = exact = True
    probs_l, preds_l, pos_l, props_l, rewards_l, events = [], [], [], [], [], []
    for rec in recs:
        if isinstance(rec, ArmChange):
            for a in rec.remove:
                policy.remove_arm(a)
            for a, f in rec.add.items():
                policy.add_arm(a, np.asarray(f, dtype=np.float64))
            continue
        if not isinstance(rec, Decision) or rec.reward is None:
            continue
        if skip_unoffered and fixed_arm is not None and fixed_arm not in rec.eligible:
            skipped += 1
            continue
        uniform &= abs(rec.propensity * len(rec.eligible) - 1.0) < 1e-6
        request = Request(rec.round, rec.context, rec.eligible)
        pick, probs, is_exact = target_distribution(policy, request)
        exact &= is_exact
        probs_l.append(probs)
        preds_l.append(reward_model.predict(rec.context, rec.eligible))
        pos_l.append([j for j, a in enumerate(rec.eligible) if a == rec.arm])
        props_l.append(rec.propensity)
        rewards_l.append(float(rec.reward))
        agree = pick == rec.arm
        events.append((rec, pick, agree))
        if agree:
            accepted += 1
            total += rec.reward
            policy.update(request, rec.arm, rec.reward)
    terms = event_terms(probs_l, preds_l, pos_l, props_l, rewards_l)
    est = terms.estimates()
    ci = terms.bootstrap(n_resamples=bootstrap_resamples, seed=seed)
    per_event = [
        EventResult(
            event_id=rec.event_id,
            round=rec.round,
            arm=rec.arm,
            propensity=rec.propensity,
            reward=float(rec.reward or 0.0),
            target_prob=float(probs_l[i][pos_l[i]].sum()),
            target_pick=pick,
            accepted=agree,
            weight=float(terms.weight[i]),
            q_logged=float(preds_l[i][pos_l[i][0]]),
            ips=float(terms.ips[i]),
            dm=float(terms.dm[i]),
            dr=float(terms.dr[i]),
        )
        for i, (rec, pick, agree) in enumerate(events)
    ]
    return ReplayResult(
        policy=policy.name,
        events=len(events),
        accepted=accepted,
        replay_value=total / accepted if accepted else None,
        ips_value=est["ips"],
        snips_value=est["snips"],
        dm_value=est["dm"],
        dr_value=est["dr"],
        ci95={k: [v.low, v.high] for k, v in ci.items()},
        uniform_logging=uniform,
        target_probabilities="exact" if exact else "sampled pick",
        skipped_unoffered=skipped,
        per_event=per_event,
    )


def write_per_event(result: ReplayResult, out: str | Path, *, append: bool = False) -> int:
    """One JSON line per evaluated event (full precision); returns the number of lines."""
    with open(out, "a" if append else "w", encoding="utf-8") as fh:
        for e in result.per_event:
            fh.write(json.dumps({"policy": result.policy, **e.__dict__}) + "\n")
    return len(result.per_event)


def replay_file(
    path: str | Path,
    policy_name: str,
    *,
    alpha: float | None = None,
    lam: float | None = None,
    epsilon: float | None = None,
    seed: int = 0,
    skip_unoffered: bool = False,
) -> ReplayResult:
    """Replay ``policy_name`` (a learning policy, or ``fixed:<arm>``) on a JSONL log."""
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
        header = json.loads(first) if first.strip() else {}
        if not isinstance(header, dict) or header.get("type") != "header":
            raise LogError("line 1: a log for replay must start with a header (device_dim, model_dim)")
        device_dim, model_dim = int(header["device_dim"]), int(header.get("model_dim", 0))
        kwargs: dict[str, Any] = {"alpha": alpha}
        if lam is not None:
            kwargs["lam"] = lam
        if epsilon is not None:
            kwargs["epsilon"] = epsilon
        policy = make_learning_policy(policy_name, device_dim, model_dim, seed, **kwargs)
        fh.seek(0)
        return replay(read_log(fh), policy, skip_unoffered=skip_unoffered, seed=seed)
