"""Feature schemas: named device/model features in, a normalized float64 vector out.

Every feature is declared with the raw range it may take, an optional transform and an optional default.
The normalized value is `(t(v) - t(lo)) / (t(hi) - t(lo))` with t = identity ("linear") or log ("log"), so
every feature lands in [0, 1] whatever its units ("none" passes a value the sender already normalized through
unchanged, range-checked only). That keeps the bandit's ridge prior (λI) and exploration bonus meaningful on
fleets the operator has not seen yet, without fitting anything to the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgesel_server.errors import InvalidFeatures

TRANSFORMS = ("linear", "log", "none")


class FeatureError(InvalidFeatures):
    """A request's features do not satisfy the space's schema."""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    min: float
    max: float
    transform: str = "linear"
    default: float | None = None

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

    def normalize(self, value: float) -> float:
        if self.transform == "none":  # already normalized by the sender; only the range is checked
            return value
        if self.transform == "log":
            lo, hi, v = math.log(self.min), math.log(self.max), math.log(value)
        else:
            lo, hi, v = self.min, self.max, value
        return (v - lo) / (hi - lo)


class FeatureSchema:
    """An ordered list of features; `vector()` validates a name→value mapping and normalizes it."""

    def __init__(self, specs: list[FeatureSpec], *, kind: str = "device") -> None:
        names = [s.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{kind} features declared twice: {', '.join(dupes)}")
        self.specs = list(specs)
        self.kind = kind
        self._index = {s.name: i for i, s in enumerate(self.specs)}

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def vector(self, values: Mapping[str, float]) -> np.ndarray:
        """Normalized vector for `values`. Unknown names are ignored (devices may report more than a
        space uses); missing ones take their default or fail; NaN, inf and out-of-range values fail."""
        out = np.empty(len(self.specs), dtype=np.float64)
        missing = []
        for i, spec in enumerate(self.specs):
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
                raise FeatureError(
                    f"{self.kind} feature {spec.name!r} = {raw:g} is outside its range "
                    f"[{spec.min:g}, {spec.max:g}]"
                )
            out[i] = spec.normalize(raw)
        if missing:
            raise FeatureError(f"missing {self.kind} feature(s) with no default: {', '.join(missing)}")
        return out
