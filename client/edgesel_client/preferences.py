"""Per-request wishes of the app (unset fields mean "use the space's defaults")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgesel.v1 import types_pb2


@dataclass(frozen=True)
class Preferences:
    latency_budget_ms: float | None = None
    """This request's latency budget: the space's QoE function scores the measured latency against it (and
    the ``qoe_model`` policy picks the model with the best QoE under it)."""
    max_model_size_mb: float | None = None
    """Models larger than this are not eligible."""
    qoe_weights: Mapping[str, float] = field(default_factory=dict)
    """Overrides of the weights of the space's QoE function, by term name."""

    def to_proto(self) -> types_pb2.Preferences:
        message = types_pb2.Preferences(qoe_weights={name: float(w) for name, w in self.qoe_weights.items()})
        if self.latency_budget_ms is not None:
            message.latency_budget_ms = float(self.latency_budget_ms)
        if self.max_model_size_mb is not None:
            message.max_model_size_mb = float(self.max_model_size_mb)
        return message
