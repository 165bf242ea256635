"""The check behind conservative exploration (`[space.policy] baseline_model`, `max_loss`): at every
checkpoint, the cumulative expected QoE a policy obtained must be at least ``(1 − max_loss)`` times what the
baseline would have obtained on the same requests.

The baseline's picks are the baseline model where it is eligible and, where it is not (a device too small
for it), the next model of the best-single-model ranking, as ``common_model`` plays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgesel_tools.sim.policies import common_model_ranking
from edgesel_tools.sim.scenario import Stream

CHECK_EVERY = 500


def baseline_picks(stream: Stream, baseline: str) -> NDArray:
    col = {a: i for i, a in enumerate(stream.arm_ids)}
    order = [col[baseline]] + [j for j in common_model_ranking(stream) if j != col[baseline]]
    picks = np.empty(stream.rounds, dtype=np.int64)
    for t in range(stream.rounds):
        allowed = stream.eligible[t]
        picks[t] = next((j for j in order if allowed[j]), order[0])
    return picks


def conservative_check(
    stream: Stream, picks: NDArray, baseline: str, max_loss: float, every: int = CHECK_EVERY
) -> dict[str, Any]:
    """Per checkpoint (every ``every`` rounds and the last): cumulative QoE of ``picks`` over the
    baseline's; ``holds`` says whether every ratio is >= 1 - max_loss."""
    t_idx = np.arange(stream.rounds)
    got = np.cumsum(stream.expected[t_idx, picks])
    base = np.cumsum(stream.expected[t_idx, baseline_picks(stream, baseline)])
    rounds = list(range(every, stream.rounds + 1, every))
    if not rounds or rounds[-1] != stream.rounds:
        rounds.append(stream.rounds)
    ratios = [float(got[r - 1] / base[r - 1]) if base[r - 1] > 0 else float("inf") for r in rounds]
    return {
        "baseline_model": baseline,
        "max_loss": max_loss,
        "checkpoint_every": every,
        "min_ratio": round(min(ratios), 4),
        "worst_round": rounds[int(np.argmin(ratios))],
        "holds": all(r >= 1.0 - max_loss for r in ratios),
        "baseline_mean_qoe": round(float(base[-1] / stream.rounds), 4),
    }
