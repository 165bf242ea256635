"""Runs policies on one stream and measures them against the oracle.

Each policy sees the same requests, eligible sets and per-(round, model) rewards; only its picks differ.
The loop is one ``select`` + one ``update`` per round, so a policy can be anything implementing
:class:`edgesel_tools.sim.policies.Policy` (an in-process Bandit today, a live-server adapter later).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgesel_tools.sim.policies import Feedback, Policy, Request, make_policy
from edgesel_tools.sim.scenario import Stream

ProgressFn = Callable[[str, int, int, float, float, float], None]


@dataclass
class PolicyRun:
    name: str
    picks: NDArray  # (T,) arm index per round
    runtime_s: float
    # Conservative exploration: the guarded baseline model and the allowed loss (None when off).
    baseline_model: str | None = None
    max_loss: float = 0.0


def eligible_lists(stream: Stream) -> tuple[list[list[str]], NDArray]:
    """Distinct eligible sets (as id lists) and, per round, which one applies: built once per stream."""
    uniq, inverse = np.unique(stream.eligible, axis=0, return_inverse=True)
    lists = [[stream.arm_ids[j] for j in np.flatnonzero(row)] for row in uniq]
    return lists, np.asarray(inverse).reshape(-1)


def run_policy(
    policy: Policy,
    stream: Stream,
    progress: ProgressFn | None = None,
    progress_every: int = 500,
    _lists: tuple[list[list[str]], NDArray] | None = None,
) -> PolicyRun:
    lists, which = _lists or eligible_lists(stream)
    col = {a: i for i, a in enumerate(stream.arm_ids)}
    for a in (m.arm_id for m in stream.scenario.models):
        policy.add_arm(a, stream.arm_features[col[a]])
    changes = {r: ch for r, ch in stream.change_rounds}
    _, best_value = stream.best_expected()
    expected, reward, contexts = stream.expected, stream.reward, stream.contexts
    picks = np.empty(stream.rounds, dtype=np.int64)
    # Measured streams carry what a Feedback reports; a policy that learns from it has update_feedback.
    fb = stream.feedback
    observe = getattr(policy, "update_feedback", None)
    regret = qoe = 0.0
    start = time.perf_counter()
    for t in range(stream.rounds):
        ch = changes.get(t)
        if ch is not None:
            for a in ch.remove:
                policy.remove_arm(a)
            for a in ch.add:
                policy.add_arm(a, stream.arm_features[col[a]])
        request = Request(t, contexts[t], lists[which[t]], None if fb is None else fb.preferences(t))
        arm = policy.select(request)
        j = col.get(arm, -1)
        if j < 0 or not stream.eligible[t, j]:
            raise RuntimeError(f"policy {policy.name!r} picked {arm!r}, not eligible at round {t}")
        if observe is not None and fb is not None:
            observe(request, arm, Feedback(float(reward[t, j]), fb.measurements(t, j), bool(fb.failed[t, j])))
        else:
            policy.update(request, arm, float(reward[t, j]))
        picks[t] = j
        if progress is not None:
            q = float(expected[t, j])
            qoe += q
            regret += float(best_value[t]) - q
            if (t + 1) % progress_every == 0 or t + 1 == stream.rounds:
                progress(
                    policy.name, t + 1, stream.rounds, qoe / (t + 1), regret, time.perf_counter() - start
                )
    return PolicyRun(
        policy.name,
        picks,
        time.perf_counter() - start,
        getattr(policy, "baseline_model", None),
        float(getattr(policy, "max_loss", 0.0)),
    )


def console_progress(
    name: str, done: int, total: int, mean_qoe: float, regret: float, elapsed: float
) -> None:
    line = f"  {name:<16} {done:>7}/{total} rounds  mean QoE {mean_qoe:.3f}  regret {regret:9.1f}"
    line += f"  {elapsed:6.1f}s"
    if sys.stderr.isatty():  # one line redrawn in place
        sys.stderr.write("\r" + line + ("\n" if done == total else ""))
    elif done == total or (4 * done) // total != (4 * (done - 1)) // total:
        sys.stderr.write(line + "\n")  # a log file gets a line at each quarter, not a \r-joined blob
    sys.stderr.flush()


def run(
    stream: Stream,
    policies: Sequence[str | Policy],
    *,
    alpha: float | None = None,
    lam: float | None = None,
    epsilon: float | None = None,
    progress: ProgressFn | None = None,
    half_life: int | None = None,
) -> list[PolicyRun]:
    """Run each policy (a name from ``policies.POLICY_FACTORIES`` or a Policy object) on the same stream."""
    kwargs: dict = {}
    if alpha is not None:
        kwargs["alpha"] = alpha
    if lam is not None:
        kwargs["lam"] = lam
    if epsilon is not None:
        kwargs["epsilon"] = epsilon
    if half_life is not None:
        kwargs["half_life"] = half_life
    lists = eligible_lists(stream)
    out = []
    for p in policies:
        policy = make_policy(p, stream, **kwargs) if isinstance(p, str) else p
        out.append(run_policy(policy, stream, progress, _lists=lists))
    return out
