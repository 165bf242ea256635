"""Type stub of the Rust extension ``edgesel_server._core`` (built from core-rs/, see docs/core.md)."""

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "POLICIES",
    "Bandit",
    "CoreError",
    "FeaturePlan",
    "QoeModel",
    "Selection",
    "SnapshotError",
    "UnknownArmError",
    "__version__",
    "log_page_columns",
    "uses_model_features",
]

_Vector = Sequence[float] | NDArray[Any]
_Scores = tuple[list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]

class _ArmStats(TypedDict):
    n_updates: int
    theta: NDArray[np.float64]
    model_features: NDArray[np.float64]
    a: NDArray[np.float64]
    a_inv: NDArray[np.float64]
    b: NDArray[np.float64]

class _SharedStats(TypedDict):
    n_updates: int
    beta: NDArray[np.float64]
    a: NDArray[np.float64]
    a_inv: NDArray[np.float64]
    b: NDArray[np.float64]

POLICIES: tuple[str, ...]
__version__: str

def uses_model_features(policy: str) -> bool: ...
def log_page_columns(
    entries: object,
) -> (
    tuple[
        list[int],
        list[str],
        list[str | None],
        list[str],
        list[bytes],
        list[float],
        list[bytes],
        list[float],
    ]
    | None
): ...

class CoreError(ValueError):
    """Base of every error the bandit core raises for a bad argument or state."""

class UnknownArmError(CoreError):
    """An arm id that the bandit does not have."""

class SnapshotError(CoreError):
    """A blob that is not a valid edgesel snapshot."""

@final
class FeaturePlan:
    # per feature: ("numeric", name, min, max, transform, lo, span, default, clip) or
    # ("categorical", name, values, default, other)
    def __new__(cls, features: Sequence[tuple[Any, ...]]) -> FeaturePlan: ...
    def vector(self, values: Mapping[str, Any], labels: Mapping[str, Any]) -> NDArray[np.float64] | None: ...
    def __len__(self) -> int: ...

@final
class Selection:
    @property
    def id(self) -> str: ...
    @property
    def mean(self) -> float: ...
    @property
    def bonus(self) -> float: ...
    @property
    def total(self) -> float: ...
    @property
    def propensity(self) -> float: ...
    @property
    def exploratory(self) -> bool: ...
    @property
    def scores(self) -> _Scores | None: ...

@final
class Bandit:
    def __new__(
        cls,
        policy: str,
        device_dim: int,
        model_dim: int = 0,
        *,
        alpha: float = 1.0,
        lam: float = 1.0,
        refactor_every: int = 1000,
        seed: int = 0,
        forced_sampling: float = 0.0,
        half_life: int = 0,
    ) -> Bandit: ...
    @property
    def policy(self) -> str: ...
    @property
    def device_dim(self) -> int: ...
    @property
    def model_dim(self) -> int: ...
    @property
    def joint_dim(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def lam(self) -> float: ...
    @property
    def refactor_every(self) -> int: ...
    @property
    def forced_sampling(self) -> float: ...
    @property
    def half_life(self) -> int: ...
    @property
    def uses_model_features(self) -> bool: ...
    @property
    def n_updates(self) -> int: ...
    def add_arm(self, arm_id: str, model_features: _Vector | None = None) -> None: ...
    def remove_arm(self, arm_id: str) -> None: ...
    def arm_ids(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def score(self, x: _Vector, arms: Sequence[str] | None = None) -> _Scores: ...
    def select(
        self, x: _Vector, arms: Sequence[str] | None = None, *, with_scores: bool = False
    ) -> Selection: ...
    def update(self, arm_id: str, x: _Vector, reward: float) -> None: ...
    def update_batch(
        self, arm_ids: Sequence[str], xs: NDArray[Any] | Sequence[Sequence[float]], rewards: _Vector
    ) -> None: ...
    def arm_stats(self, arm_id: str) -> _ArmStats: ...
    def shared_stats(self) -> _SharedStats: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(
        data: bytes | bytearray, *, forced_sampling: float | None = None, half_life: int | None = None
    ) -> Bandit: ...
    @staticmethod
    def joint_features(x: _Vector, m: _Vector) -> NDArray[np.float64]: ...

@final
class QoeModel:
    def __new__(
        cls,
        device_dim: int,
        model_dim: int = 0,
        spec: dict[str, Any] | None = None,
        *,
        alpha: float = 1.0,
        lam: float = 1.0,
        refactor_every: int = 1000,
        baseline_model: str | None = None,
        max_loss: float = 0.05,
        half_life: int = 0,
    ) -> QoeModel: ...
    @property
    def policy(self) -> str: ...
    @property
    def device_dim(self) -> int: ...
    @property
    def model_dim(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def lam(self) -> float: ...
    @property
    def refactor_every(self) -> int: ...
    @property
    def half_life(self) -> int: ...
    @property
    def n_updates(self) -> int: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    def add_arm(
        self, arm_id: str, model_features: _Vector | None = None, *, accuracy: float | None = None
    ) -> None: ...
    def remove_arm(self, arm_id: str) -> None: ...
    def arm_ids(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def score(
        self,
        x: _Vector,
        arms: Sequence[str] | None = None,
        *,
        latency_budget_ms: float | None = None,
        energy_budget_mj: float | None = None,
        weights: dict[str, float] | None = None,
    ) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]: ...
    def select(
        self,
        x: _Vector,
        arms: Sequence[str] | None = None,
        *,
        latency_budget_ms: float | None = None,
        energy_budget_mj: float | None = None,
        weights: dict[str, float] | None = None,
    ) -> tuple[str, float, float, float, bool]: ...
    def choose(
        self,
        x: _Vector,
        arms: Sequence[str] | None = None,
        *,
        latency_budget_ms: float | None = None,
        energy_budget_mj: float | None = None,
        weights: dict[str, float] | None = None,
        with_scores: bool = False,
    ) -> tuple[
        str,
        float,
        float,
        float,
        bool,
        tuple[list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None,
    ]: ...
    def update(
        self,
        arm_id: str,
        x: _Vector,
        reward: float,
        *,
        latency_ms: float | None = None,
        energy_mj: float | None = None,
        user_rating: float | None = None,
        accuracy: float | None = None,
        failed: bool = False,
        latency_budget_ms: float | None = None,
        energy_budget_mj: float | None = None,
        weights: dict[str, float] | None = None,
    ) -> None: ...
    def update_batch(
        self,
        arm_ids: Sequence[str],
        xs: NDArray[Any] | Sequence[Sequence[float]],
        rewards: _Vector,
        *,
        latency_ms: _Vector,
        energy_mj: _Vector,
        user_rating: _Vector,
        accuracy: _Vector,
        failed: Sequence[bool],
        latency_budget_ms: _Vector,
        energy_budget_mj: _Vector,
        weights: Sequence[dict[str, float] | None] | None = None,
    ) -> int: ...
    def target_stats(self) -> dict[str, dict[str, float]]: ...
    def conservative_state(self) -> dict[str, Any] | None: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes | bytearray, *, half_life: int | None = None) -> QoeModel: ...
