"""Feature schemas: named device/model features in, a normalized float64 vector out.

A numeric feature is declared with the raw range it may take, an optional transform and an optional default.
The normalized value is `(t(v) - t(lo)) / (t(hi) - t(lo))` with t = identity ("linear") or log ("log"), so
every feature lands in [0, 1] whatever its units ("none" passes a value the sender already normalized through
unchanged, range-checked only). That keeps the bandit's ridge prior (λI) and exploration bonus meaningful on
fleets the operator has not seen yet, without fitting anything to the traffic. A value outside the range is
rejected, or clipped to it when the feature says `clip = true`.

A categorical feature (`kind = "categorical"`) takes one of its declared string `values` and is one-hot
encoded: one column per value, in declared order, then an `other` column when `unknown = "other"` (an
undeclared value is then a 1 there instead of an error). Columns follow the declaration order of the
features, each categorical one expanding in place; `FeatureSchema.columns` names them. docs/qoe.md has the
whole contract with a worked example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgesel_server._core import FeaturePlan
from edgesel_server.errors import InvalidFeatures

TRANSFORMS = ("linear", "log", "none")
UNKNOWN_VALUE_RULES = ("error", "other")
OTHER_COLUMN = "<other>"
# Error messages echo the caller's value; a label can be long, the message should not be.
_ECHO_MAX = 64


class FeatureError(InvalidFeatures):
    """A request's features do not satisfy the space's schema."""


def _echo(value: str) -> str:
    return repr(value if len(value) <= _ECHO_MAX else value[:_ECHO_MAX] + "...")


@dataclass(frozen=True)
class FeatureSpec:
    """A numeric feature."""

    name: str
    min: float
    max: float
    transform: str = "linear"
    default: float | None = None
    # Out-of-range values are clipped to [min, max] instead of rejected (non-finite ones are still rejected).
    clip: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a feature needs a name")
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"feature {self.name!r}: transform must be one of {TRANSFORMS}, not {self.transform!r}"
            )
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min >= self.max:
            raise ValueError(f"feature {self.name!r}: needs finite min < max, got [{self.min}, {self.max}]")
        if self.transform == "log" and self.min <= 0:
            raise ValueError(f"feature {self.name!r}: a log feature needs min > 0, got {self.min}")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(
                f"feature {self.name!r}: default {self.default} is outside [{self.min}, {self.max}]"
            )
        # The transformed range, once (every Select normalizes its device's features). Not fields.
        lo, hi = (math.log(self.min), math.log(self.max)) if self.transform == "log" else (self.min, self.max)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_span", hi - lo)

    @property
    def columns(self) -> list[str]:
        return [self.name]

    def normalize(self, value: float) -> float:
        if self.transform == "none":  # already normalized by the sender; only the range is checked
            return value
        v = math.log(value) if self.transform == "log" else value
        return (v - self._lo) / self._span  # type: ignore[attr-defined]  # set in __post_init__


@dataclass(frozen=True)
class CategoricalSpec:
    """A categorical feature: one of `values`, one-hot encoded (plus an `other` column if unknown="other")."""

    name: str
    values: tuple[str, ...]
    default: str | None = None
    unknown: str = "error"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a feature needs a name")
        if not self.values:
            raise ValueError(f"feature {self.name!r}: a categorical feature needs at least one value")
        if any(not isinstance(v, str) or not v for v in self.values):
            raise ValueError(f"feature {self.name!r}: values must be non-empty strings")
        dupes = sorted({v for v in self.values if self.values.count(v) > 1})
        if dupes:
            raise ValueError(f"feature {self.name!r}: values listed twice: {', '.join(dupes)}")
        if self.unknown not in UNKNOWN_VALUE_RULES:
            raise ValueError(
                f"feature {self.name!r}: unknown must be one of {UNKNOWN_VALUE_RULES}, not {self.unknown!r}"
            )
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"feature {self.name!r}: default {self.default!r} is not one of its values")

    @property
    def columns(self) -> list[str]:
        tail = [OTHER_COLUMN] if self.unknown == "other" else []
        return [f"{self.name}={v}" for v in [*self.values, *tail]]

    def column_of(self, value: str, kind: str) -> int:
        """Index (within this feature's columns) of the 1 for `value`."""
        try:
            return self.values.index(value)
        except ValueError:
            if self.unknown == "other":
                return len(self.values)
            raise FeatureError(
                f"{kind} label {self.name!r} = {_echo(value)} is not one of the allowed values: "
                f"{', '.join(self.values)}"
            ) from None


AnyFeatureSpec = FeatureSpec | CategoricalSpec


def _plan_entry(spec: AnyFeatureSpec) -> tuple:
    """A feature as `_core.FeaturePlan` takes it (core-rs/src/python_schema.rs)."""
    if isinstance(spec, CategoricalSpec):
        return ("categorical", spec.name, list(spec.values), spec.default, spec.unknown == "other")
    lo, span = spec._lo, spec._span  # type: ignore[attr-defined]  # set in __post_init__
    return ("numeric", spec.name, spec.min, spec.max, spec.transform, lo, span, spec.default, spec.clip)


class FeatureSchema:
    """An ordered list of features; `vector()` validates name→value mappings and normalizes them.

    Numeric features arrive in `values` (the proto's `map<string, double>`), categorical ones in `labels`
    (`map<string, string>`). `len(schema)` is the width of the vector, one column per numeric feature and per
    categorical value."""

    def __init__(self, specs: Sequence[AnyFeatureSpec], *, kind: str = "device") -> None:
        names = [s.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{kind} features declared twice: {', '.join(dupes)}")
        self.specs = list(specs)
        self.kind = kind
        self.columns = [c for s in self.specs for c in s.columns]
        self._offsets = np.cumsum([0] + [len(s.columns) for s in self.specs]).tolist()
        # The plain case (every feature present or defaulted, in range, declared) in the Rust core; anything
        # else comes back None and is decided, and worded, by `_vector` below.
        self._plan = self._new_plan()

    def _new_plan(self) -> FeaturePlan:
        return FeaturePlan([_plan_entry(s) for s in self.specs])

    # Pickled without the core's plan (the load generator sends schemas to its worker processes): rebuilt.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_plan"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._plan = self._new_plan()

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        """The declared feature names (a categorical feature is one name but several columns)."""
        return [s.name for s in self.specs]

    def vector(self, values: Mapping[str, float], labels: Mapping[str, str] | None = None) -> np.ndarray:
        """Normalized vector for `values` (numeric) and `labels` (categorical). Unknown names are ignored
        (devices may report more than a space uses); missing ones take their default or fail; NaN, inf and
        out-of-range numbers fail (or clip), undeclared categorical values fail (or go to `other`), and a
        feature sent in the wrong map fails."""
        labels = labels or {}
        x = self._plan.vector(values, labels)
        return x if x is not None else self._vector(values, labels)

    def _vector(self, values: Mapping[str, float], labels: Mapping[str, str]) -> np.ndarray:
        """`vector` in Python: the reference for the core's plain case, and every other case."""
        out = np.zeros(len(self.columns), dtype=np.float64)
        missing = []
        for spec, at in zip(self.specs, self._offsets, strict=False):
            if isinstance(spec, CategoricalSpec):
                if spec.name in values:
                    raise FeatureError(
                        f"{self.kind} feature {spec.name!r} is categorical: send it as a label (a string), "
                        "not a number"
                    )
                label = labels.get(spec.name, spec.default)
                if label is None:
                    missing.append(spec.name)
                    continue
                out[at + spec.column_of(label, self.kind)] = 1.0
                continue
            if spec.name in labels:
                raise FeatureError(
                    f"{self.kind} feature {spec.name!r} is numeric: send it as a number, not a label"
                )
            raw = values.get(spec.name)
            if raw is None:
                if spec.default is None:
                    missing.append(spec.name)
                    continue
                raw = spec.default
            raw = float(raw)
            if not math.isfinite(raw):
                raise FeatureError(f"{self.kind} feature {spec.name!r} is {raw}, it must be a finite number")
            if not spec.min <= raw <= spec.max:
                if not spec.clip:
                    raise FeatureError(
                        f"{self.kind} feature {spec.name!r} = {raw:g} is outside its range "
                        f"[{spec.min:g}, {spec.max:g}]"
                    )
                raw = min(spec.max, max(spec.min, raw))
            out[at] = spec.normalize(raw)
        if missing:
            raise FeatureError(f"missing {self.kind} feature(s) with no default: {', '.join(missing)}")
        return out
