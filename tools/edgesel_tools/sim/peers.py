"""Peers: the contextual-bandit libraries a user might pick instead of edgesel, on the same stream.

- ``vw_cb_adf``: Vowpal Wabbit ``--cb_explore_adf`` (ε-greedy, VW's default exploration, ε = 0.05) and
  ``vw_squarecb`` (``--squarecb``, VW's recommended exploration), with the device vector as the shared
  namespace ``D``, each action's model vector plus a one-hot arm id as namespace ``A``, and ``-q DA``: every
  device feature × every model feature and × the arm id (per-arm device weights), i.e. device×model
  interactions. Cost = −reward. The action is drawn from VW's pmf with the policy's own seeded RNG.
- ``mabwiser_linucb``: MABWiser's ``LearningPolicy.LinUCB`` (disjoint ridge per arm over the device vector),
  α = the core's disjoint default (0.5, or ``--alpha``), λ = ``--lam``; argmax of its UCB over eligible arms.
  Feedback is passed to ``partial_fit`` in batches of MABWISER_BATCH decisions, as MABWiser is meant to be
  used: one ``partial_fit`` deep-copies every arm's model (≈ 47 ms with 86 arms here); per decision that
  would take 15 minutes per 20,000 rounds. Ties (and every pick before the first fit) go to the smallest id.

Both packages are optional (requirements-dev.txt pins them); a missing one is a clear error naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edgesel_tools.sim.policies import DEFAULT_ALPHA, Request

if TYPE_CHECKING:
    from edgesel_tools.sim.policies import PolicyContext

MABWISER_BATCH = 10


def _require(module: str, package: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(
            f"the peer needs the {package!r} package (pip install -r requirements-dev.txt)"
        ) from None


def _features(prefix: str, x: NDArray) -> str:
    return " ".join(f"{prefix}{i}:{float(v):.6g}" for i, v in enumerate(x) if v != 0.0)


class VowpalWabbitPolicy:
    """VW contextual bandit with action-dependent features (ADF): one multi-line example per decision."""

    def __init__(self, name: str, seed: int, explore: str) -> None:
        vw = _require("vowpalwabbit", "vowpalwabbit")
        self.name = name
        self.vw = vw.Workspace(
            f"--cb_explore_adf {explore} -q DA --random_seed {seed % 2**31} --quiet", quiet=True
        )
        self.rng = np.random.default_rng(seed)
        self.actions: dict[str, str] = {}  # arm id -> its action line (ids are not VW-safe: use an index)
        self._next = 0
        self._pending: tuple[int, list[str], list[str], NDArray] | None = None

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.actions[arm_id] = f"|A arm{self._next} {_features('m', np.asarray(features))}"
        self._next += 1

    def remove_arm(self, arm_id: str) -> None:
        self.actions.pop(arm_id, None)

    def _example(self, request: Request) -> list[str]:
        return [f"shared |D {_features('d', request.x)}"] + [self.actions[a] for a in request.eligible]

    def select(self, request: Request) -> str:
        lines = self._example(request)
        pmf = np.asarray(self.vw.predict(lines), dtype=float)
        pmf = pmf / pmf.sum()
        i = int(self.rng.choice(len(pmf), p=pmf))
        self._pending = (request.round, request.eligible, lines, pmf)
        return request.eligible[i]

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        if self._pending is None or self._pending[0] != request.round:
            lines, pmf = self._example(request), np.full(len(request.eligible), 1.0 / len(request.eligible))
            eligible = request.eligible
        else:
            _, eligible, lines, pmf = self._pending
        i = eligible.index(arm_id)
        labelled = list(lines)
        labelled[1 + i] = f"0:{-reward:.6g}:{pmf[i]:.6g} {lines[1 + i]}"
        self.vw.learn(labelled)
        self._pending = None


class MabwiserLinUCBPolicy:
    """MABWiser's disjoint LinUCB; it predicts over every arm it knows, the runner's eligible set filters."""

    def __init__(self, name: str, seed: int, alpha: float, lam: float) -> None:
        mab = _require("mabwiser.mab", "mabwiser").mab
        self.name = name
        self._mab_cls, self._lp = mab.MAB, mab.LearningPolicy.LinUCB(alpha=alpha, l2_lambda=lam)
        self.seed = seed
        self.arms: list[str] = []
        self.model: Any = None  # MABWiser needs one fit before it predicts
        self._batch: list[tuple[str, float, NDArray]] = []

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.arms.append(arm_id)
        if self.model is not None:
            self.model.add_arm(arm_id)

    def remove_arm(self, arm_id: str) -> None:
        self.arms.remove(arm_id)
        if self.model is not None:
            self.model.remove_arm(arm_id)

    def select(self, request: Request) -> str:
        # Ties go to the smallest id, as in the core, so that with MABWISER_BATCH = 1 MABWiser makes the core
        # disjoint_linucb's picks (tests/sim/test_peers_compare.py). Nothing fitted yet: every arm ties.
        if self.model is None:
            return min(request.eligible)
        scores = self.model.predict_expectations(request.x[None, :])
        best = max(scores[a] for a in request.eligible)
        return min(a for a in request.eligible if scores[a] == best)

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        self._batch.append((arm_id, reward, request.x))
        if len(self._batch) < MABWISER_BATCH:
            return
        decisions, rewards, xs = zip(*self._batch, strict=True)
        self._batch = []
        contexts = np.array(xs)
        if self.model is None:
            self.model = self._mab_cls(arms=list(self.arms), learning_policy=self._lp, seed=self.seed % 2**31)
            self.model.fit(decisions=list(decisions), rewards=list(rewards), contexts=contexts)
        else:
            self.model.partial_fit(decisions=list(decisions), rewards=list(rewards), contexts=contexts)


def vw_cb_adf(name: str, c: PolicyContext) -> VowpalWabbitPolicy:
    return VowpalWabbitPolicy(name, c.pseed(name), "--epsilon 0.05")


def vw_squarecb(name: str, c: PolicyContext) -> VowpalWabbitPolicy:
    return VowpalWabbitPolicy(name, c.pseed(name), "--squarecb")


def mabwiser_linucb(name: str, c: PolicyContext) -> MabwiserLinUCBPolicy:
    alpha = DEFAULT_ALPHA["disjoint_linucb"] if c.alpha is None else c.alpha
    return MabwiserLinUCBPolicy(name, c.pseed(name), alpha, c.lam)
