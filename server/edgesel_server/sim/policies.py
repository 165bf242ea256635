"""Policies the runner can drive: anything with ``add_arm / remove_arm / select / update``.

The core policies wrap ``edgesel_server.core.Bandit`` in-process; a live-server adapter (Select/Feedback over
the SDK) can implement the same four methods later and be passed to :func:`edgesel_server.sim.runner.run`.
The oracle and common-model baselines read the stream's ground truth, which only a simulator has.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from edgesel_server.core import POLICIES, Bandit, uses_model_features
from edgesel_server.sim.scenario import Stream

CORE_POLICIES = POLICIES  # qoe_model first, then Bandit's policy table
BASELINES = ("oracle", "common_model", "random", "epsilon_greedy")
ALL_POLICIES = (
    "oracle",
    *CORE_POLICIES,
    "qoe_model_conservative",
    "common_model",
    "epsilon_greedy",
    "random",
)

# Defaults chosen to be robust across scenarios (rewards in [0, 1], features ~[0, 1]), not tuned to one file:
# see docs/simulator.md, "Policies".
DEFAULT_ALPHA = {"qoe_model": 1.0, "hybrid_linucb": 0.5, "disjoint_linucb": 0.5, "lin_ts": 0.15}
DEFAULT_LAMBDA = 1.0
DEFAULT_EPSILON = 0.1


@dataclass
class Request:
    """What a policy sees for one decision."""

    round: int
    x: NDArray  # normalized device vector (static ++ state ++ stated preferences)
    eligible: list[str]  # arm ids the policy may pick
    # What the device states with the request (QoE weights, energy budget), as `QoeModel` keywords.
    preferences: dict = field(default_factory=dict)


class Policy(Protocol):
    name: str

    def add_arm(self, arm_id: str, features: NDArray) -> None: ...

    def remove_arm(self, arm_id: str) -> None: ...

    def select(self, request: Request) -> str: ...

    def update(self, request: Request, arm_id: str, reward: float) -> None: ...


def policy_seed(seed: int, name: str) -> int:
    """A per-policy seed derived from the run seed, stable across Python processes."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


class BanditPolicy:
    """``hybrid_linucb`` / ``disjoint_linucb`` / ``lin_ts`` through the Rust core.

    disjoint: the context is the device vector and arms have no features; hybrid / lin_ts: arms carry their
    model vector, so a new arm starts from what the shared model knows about similar models."""

    def __init__(
        self,
        name: str,
        device_dim: int,
        model_dim: int,
        *,
        alpha: float | None = None,
        lam: float = DEFAULT_LAMBDA,
        seed: int = 0,
        policy: str | None = None,
    ) -> None:
        self.name = name
        core_policy = policy or name
        self.stochastic = core_policy == "lin_ts"  # no closed-form choice probabilities
        self.uses_model_features = uses_model_features(core_policy)
        self.bandit = Bandit(
            core_policy,
            device_dim,
            model_dim if self.uses_model_features else 0,
            alpha=DEFAULT_ALPHA.get(core_policy, 0.5) if alpha is None else alpha,
            lam=lam,
            seed=seed,
        )

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.bandit.add_arm(
            arm_id, np.asarray(features, dtype=np.float64) if self.uses_model_features else None
        )

    def remove_arm(self, arm_id: str) -> None:
        self.bandit.remove_arm(arm_id)

    def select(self, request: Request) -> str:
        return self.bandit.select(request.x, request.eligible).id

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        self.bandit.update(arm_id, request.x, reward)


class QoeModelPolicy:
    """``qoe_model`` through the Rust core: learns the measurements (latency, energy, does it run) that the
    runner hands to :meth:`update_measured` and composes each request's QoE with the scenario's QoE function
    (``spec``) under the request's preferences. ``accuracy`` is the catalog's top-1 per arm (a fraction)."""

    wants_measurements = True

    def __init__(
        self,
        name: str,
        device_dim: int,
        model_dim: int,
        *,
        spec: dict | None = None,
        accuracy: dict[str, float] | None = None,
        alpha: float | None = None,
        lam: float = DEFAULT_LAMBDA,
        baseline_model: str | None = None,
        max_loss: float = 0.05,
    ) -> None:
        from edgesel_server.core import QoeModel

        self.name = name
        self.accuracy = accuracy or {}
        self.baseline_model, self.max_loss = baseline_model, max_loss
        self.model = QoeModel(
            device_dim,
            model_dim,
            spec,
            alpha=DEFAULT_ALPHA["qoe_model"] if alpha is None else alpha,
            lam=lam,
            baseline_model=baseline_model,
            max_loss=max_loss,
        )
        self.fallbacks = 0

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.model.add_arm(arm_id, np.asarray(features, dtype=np.float64), accuracy=self.accuracy.get(arm_id))

    def remove_arm(self, arm_id: str) -> None:
        self.model.remove_arm(arm_id)

    def select(self, request: Request) -> str:
        arm, _, _, _, fallback = self.model.select(request.x, request.eligible, **request.preferences)
        self.fallbacks += int(fallback)
        return arm

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        """Scalar feedback only (read as a rating-equivalent, docs/core.md)."""
        self.model.update(arm_id, request.x, reward, **request.preferences)

    def update_measured(self, request: Request, arm_id: str, reward: float, measured: dict) -> None:
        self.model.update(arm_id, request.x, reward, **measured, **request.preferences)


class RandomPolicy:
    def __init__(self, seed: int = 0, name: str = "random") -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        pass

    def remove_arm(self, arm_id: str) -> None:
        pass

    def select(self, request: Request) -> str:
        return request.eligible[int(self.rng.integers(len(request.eligible)))]

    def distribution(self, request: Request) -> tuple[str, NDArray]:
        """A pick (the same draw as `select`) and the exact probabilities over the eligible list."""
        n = len(request.eligible)
        return self.select(request), np.full(n, 1.0 / n)

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        pass


class EpsilonGreedyPolicy:
    """Non-contextual: per-arm mean reward; explore uniformly with probability ε. Untried arms count as +inf,
    so each is tried once before exploitation starts (ties go to the earliest arm)."""

    def __init__(self, epsilon: float = DEFAULT_EPSILON, seed: int = 0, name: str = "epsilon_greedy") -> None:
        self.name, self.epsilon = name, epsilon
        self.rng = np.random.default_rng(seed)
        self.count: dict[str, int] = {}
        self.total: dict[str, float] = {}

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.count.setdefault(arm_id, 0)
        self.total.setdefault(arm_id, 0.0)

    def remove_arm(self, arm_id: str) -> None:
        self.count.pop(arm_id, None)
        self.total.pop(arm_id, None)

    def _greedy(self, eligible: list[str]) -> int:
        best, best_v = 0, -np.inf
        for j, a in enumerate(eligible):
            n = self.count[a]
            v = self.total[a] / n if n else np.inf
            if v > best_v:
                best, best_v = j, v
        return best

    def select(self, request: Request) -> str:
        if self.rng.random() < self.epsilon:
            return request.eligible[int(self.rng.integers(len(request.eligible)))]
        return request.eligible[self._greedy(request.eligible)]

    def distribution(self, request: Request) -> tuple[str, NDArray]:
        """A pick (the same draws as `select`) and the exact probabilities: ε/K each, plus 1 − ε on the
        greedy arm."""
        n = len(request.eligible)
        probs = np.full(n, self.epsilon / n)
        probs[self._greedy(request.eligible)] += 1.0 - self.epsilon
        return self.select(request), probs

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        self.count[arm_id] += 1
        self.total[arm_id] += reward


class OraclePolicy:
    """Picks the arm with the highest expected QoE for this very request (knows the ground truth)."""

    def __init__(self, stream: Stream, name: str = "oracle") -> None:
        self.name = name
        self._best, _ = stream.best_expected()
        self._ids = stream.arm_ids

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        pass

    def remove_arm(self, arm_id: str) -> None:
        pass

    def select(self, request: Request) -> str:
        return self._ids[self._best[request.round]]

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        pass


def common_model_ranking(stream: Stream) -> list[int]:
    """Arm indices ordered by total expected QoE over the stream (hindsight), counting only rounds where the
    arm was eligible: for an arm eligible everywhere that is its mean; an arm added late or filtered out for
    small devices cannot win on the few rounds it covers. Ties by catalog order."""
    score = np.where(stream.eligible, stream.expected, 0.0).sum(axis=0) / stream.rounds
    return [int(i) for i in np.argsort(-score, kind="stable")]


class CommonModelPolicy:
    """The single model that is best on average in hindsight; where it is not eligible (not yet in the
    catalog, filtered by RAM) the next-best model on that ranking."""

    def __init__(self, stream: Stream, name: str = "common_model") -> None:
        self.name = name
        ranking = common_model_ranking(stream)
        self.ranking = [stream.arm_ids[i] for i in ranking]
        self.model = self.ranking[0]

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        pass

    def remove_arm(self, arm_id: str) -> None:
        pass

    def select(self, request: Request) -> str:
        allowed = set(request.eligible)
        for a in self.ranking:
            if a in allowed:
                return a
        return request.eligible[0]

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        pass


class FixedPolicy:
    """Always the same arm (the first eligible one when it is not offered): a non-learning reference."""

    def __init__(self, arm_id: str) -> None:
        self.name = f"fixed:{arm_id}"
        self.arm_id = arm_id

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        pass

    def remove_arm(self, arm_id: str) -> None:
        pass

    def select(self, request: Request) -> str:
        # Fallback when the arm is not offered: the first eligible arm (`replay --skip-unoffered` instead
        # leaves such events out of the estimate).
        return self.arm_id if self.arm_id in request.eligible else request.eligible[0]

    def distribution(self, request: Request) -> tuple[str, NDArray]:
        pick = self.select(request)
        return pick, np.array([1.0 if a == pick else 0.0 for a in request.eligible]) / request.eligible.count(
            pick
        )

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        pass


def make_learning_policy(
    name: str,
    device_dim: int,
    model_dim: int,
    seed: int,
    *,
    alpha: float | None = None,
    lam: float = DEFAULT_LAMBDA,
    epsilon: float = DEFAULT_EPSILON,
) -> Policy:
    """Policies that need only the data a server has (no ground truth): usable online and in replay."""
    pseed = policy_seed(seed, name)
    if name == "qoe_model":
        return QoeModelPolicy(name, device_dim, model_dim, alpha=alpha, lam=lam)
    if name in CORE_POLICIES:
        return BanditPolicy(name, device_dim, model_dim, alpha=alpha, lam=lam, seed=pseed)
    if name == "random":
        return RandomPolicy(pseed)
    if name == "epsilon_greedy":
        return EpsilonGreedyPolicy(epsilon, pseed)
    if name.startswith("fixed:"):
        return FixedPolicy(name.split(":", 1)[1])
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(ALL_POLICIES)}, fixed:<arm id>")


def make_policy(
    name: str,
    stream: Stream,
    *,
    alpha: float | None = None,
    lam: float = DEFAULT_LAMBDA,
    epsilon: float = DEFAULT_EPSILON,
) -> Policy:
    if name == "oracle":
        return OraclePolicy(stream)
    if name == "common_model":
        return CommonModelPolicy(stream)
    if name in ("qoe_model", "qoe_model_conservative"):
        # The conservative variant guards the best single model in hindsight (the incumbent an operator
        # would ship to everyone), with the default max_loss.
        baseline = CommonModelPolicy(stream).model if name == "qoe_model_conservative" else None
        return QoeModelPolicy(
            name,
            stream.device_dim,
            stream.model_dim,
            spec=stream.qoe_spec(),
            accuracy=stream.accuracy(),
            alpha=alpha,
            lam=lam,
            baseline_model=baseline,
        )
    return make_learning_policy(
        name, stream.device_dim, stream.model_dim, stream.seed, alpha=alpha, lam=lam, epsilon=epsilon
    )
