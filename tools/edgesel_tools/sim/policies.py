"""Policies the runner can drive: anything with ``add_arm / remove_arm / select / update``.

The core policies wrap ``edgesel_server.core.Bandit`` in-process; a live-server adapter (Select/Feedback over
the SDK) can implement the same four methods later and be passed to :func:`edgesel_tools.sim.runner.run`.
The oracle and common-model baselines read the stream's ground truth, which only a simulator has.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edgesel_server.core import POLICIES, Bandit, uses_model_features
from edgesel_tools.sim.scenario import Stream

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
    # Measured scenarios: the request's Preferences as the server receives them
    # ({"latency_budget_ms": float, "qoe_weights": {measurement: weight}}); None in formula scenarios.
    prefs: dict[str, Any] | None = None


@dataclass
class Feedback:
    """What a device reports about one decision (measured scenarios): the reward the space's QoE function
    gives and the measurements it was computed from. Policies with an ``update_feedback(request, arm_id,
    feedback)`` method get this instead of ``update``."""

    reward: float
    measurements: dict[str, float]  # latency_ms, accuracy, maybe user_rating; empty when the model failed
    failed: bool  # the model did not run on this device (its reward is the space's minimum)


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
        half_life: int = 0,
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
            half_life=half_life,
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
    """``qoe_model`` through the Rust core: learns what each Feedback measured (``update_feedback``: latency,
    energy, rating, or that the model did not run) and composes each request's QoE with the scenario's QoE
    function (``spec``) under the request's preferences (``Request.prefs``). ``accuracy`` is the catalog's
    top-1 per arm (a fraction). Without measurements (a log replay) a reward teaches as a rating would."""

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
        half_life: int = 0,
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
            half_life=half_life,
        )
        self.fallbacks = 0

    @staticmethod
    def _prefs(request: Request) -> dict[str, Any]:
        p = request.prefs or {}
        return {
            "latency_budget_ms": p.get("latency_budget_ms"),
            "energy_budget_mj": p.get("energy_budget_mj"),
            "weights": p.get("qoe_weights") or None,
        }

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        self.model.add_arm(arm_id, np.asarray(features, dtype=np.float64), accuracy=self.accuracy.get(arm_id))

    def remove_arm(self, arm_id: str) -> None:
        self.model.remove_arm(arm_id)

    def select(self, request: Request) -> str:
        arm, _, _, _, fallback = self.model.select(request.x, request.eligible, **self._prefs(request))
        self.fallbacks += int(fallback)
        return arm

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        self.model.update(arm_id, request.x, reward, **self._prefs(request))

    def update_feedback(self, request: Request, arm_id: str, feedback: Feedback) -> None:
        m = feedback.measurements
        self.model.update(
            arm_id,
            request.x,
            feedback.reward,
            latency_ms=m.get("latency_ms"),
            energy_mj=m.get("energy_mj"),
            user_rating=m.get("user_rating"),
            accuracy=m.get("accuracy"),
            failed=feedback.failed,
            **self._prefs(request),
        )


def _qoe_model(name: str, c: PolicyContext) -> Policy:
    """With the stream: its QoE function and catalog accuracies (and, for the conservative variant, the best
    single model in hindsight as the baseline, the incumbent an operator would ship to everyone). Without
    (a log replay): the server's default QoE function."""
    st = c.stream
    baseline = CommonModelPolicy(st).model if st is not None and name == "qoe_model_conservative" else None
    return QoeModelPolicy(
        name,
        c.device_dim,
        c.model_dim,
        spec=st.qoe_spec() if st is not None else None,
        accuracy=st.accuracy() if st is not None else None,
        alpha=c.alpha,
        lam=c.lam,
        baseline_model=baseline,
        half_life=c.half_life,
    )


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


@dataclass(frozen=True)
class PolicyContext:
    """What a policy factory gets: dimensions, the run seed, the hyper-parameters the CLI passes, and the
    stream (only for the baselines that read the ground truth)."""

    device_dim: int
    model_dim: int
    seed: int
    alpha: float | None = None
    lam: float = DEFAULT_LAMBDA
    epsilon: float = DEFAULT_EPSILON
    stream: Stream | None = None
    half_life: int = 0  # forgetting of the core policies (docs/core.md, "Forgetting")

    def pseed(self, name: str) -> int:
        return policy_seed(self.seed, name)


PolicyFactory = Callable[[str, PolicyContext], Policy]


def _core(name: str, c: PolicyContext) -> Policy:
    return BanditPolicy(
        name, c.device_dim, c.model_dim, alpha=c.alpha, lam=c.lam, seed=c.pseed(name), half_life=c.half_life
    )


def _needs_stream(c: PolicyContext, name: str) -> Stream:
    if c.stream is None:
        raise ValueError(f"policy {name!r} reads the simulator's ground truth; it cannot run on a log")
    return c.stream


def _peer(attr: str) -> PolicyFactory:
    def make(name: str, c: PolicyContext) -> Policy:
        from edgesel_tools.sim import peers  # optional packages, imported only when asked for

        factory: PolicyFactory = getattr(peers, attr)
        return factory(name, c)

    return make


# Every policy the simulator knows, by name: adding one is one line here. `oracle` and `common_model` read the
# ground truth (simulator only); the others need only what a server has, so replay can run them too. Peers
# (sim/peers.py) are other libraries a user might pick instead, on the same stream; they need the optional
# packages of requirements-dev.txt (vowpalwabbit, mabwiser).
POLICY_FACTORIES: dict[str, PolicyFactory] = {
    "oracle": lambda n, c: OraclePolicy(_needs_stream(c, n)),
    "common_model": lambda n, c: CommonModelPolicy(_needs_stream(c, n)),
    "qoe_model": _qoe_model,
    "qoe_model_conservative": _qoe_model,
    "hybrid_linucb": _core,
    "disjoint_linucb": _core,
    "lin_ts": _core,
    "epsilon_greedy": lambda n, c: EpsilonGreedyPolicy(c.epsilon, c.pseed(n)),
    "random": lambda n, c: RandomPolicy(c.pseed(n)),
    "vw_cb_adf": _peer("vw_cb_adf"),
    "vw_squarecb": _peer("vw_squarecb"),
    "mabwiser_linucb": _peer("mabwiser_linucb"),
}
GROUND_TRUTH_POLICIES = ("oracle", "common_model")
PEER_POLICIES = ("vw_cb_adf", "vw_squarecb", "mabwiser_linucb")


def known_policy(name: str) -> bool:
    return name in POLICY_FACTORIES or name.startswith("fixed:")


def make_learning_policy(
    name: str,
    device_dim: int,
    model_dim: int,
    seed: int,
    *,
    alpha: float | None = None,
    lam: float = DEFAULT_LAMBDA,
    epsilon: float = DEFAULT_EPSILON,
    half_life: int = 0,
) -> Policy:
    """Policies that need only the data a server has (no ground truth): usable online and in replay."""
    return _make(name, PolicyContext(device_dim, model_dim, seed, alpha, lam, epsilon, half_life=half_life))


def _make(name: str, c: PolicyContext) -> Policy:
    if name.startswith("fixed:"):
        return FixedPolicy(name.split(":", 1)[1])
    factory = POLICY_FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_FACTORIES)}, fixed:<arm id>")
    return factory(name, c)


def make_policy(
    name: str,
    stream: Stream,
    *,
    alpha: float | None = None,
    lam: float = DEFAULT_LAMBDA,
    epsilon: float = DEFAULT_EPSILON,
    half_life: int = 0,
) -> Policy:
    c = PolicyContext(
        stream.device_dim, stream.model_dim, stream.seed, alpha, lam, epsilon, stream, half_life
    )
    return _make(name, c)
