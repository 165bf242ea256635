"""The bandit core (Rust, ``edgesel_server._core``), re-exported for the rest of the server.

See docs/core.md for the models, the joint feature map, the API and the snapshot format.
"""

from edgesel_server._core import Bandit, QoeModel, SnapshotError, UnknownArmError

# `qoe_model` (the default) is the QoeModel class; the others are Bandit policies.
POLICIES = ("qoe_model", "disjoint_linucb", "hybrid_linucb", "lin_ts")
BANDIT_POLICIES = ("disjoint_linucb", "hybrid_linucb", "lin_ts")

__all__ = ["BANDIT_POLICIES", "POLICIES", "Bandit", "QoeModel", "SnapshotError", "UnknownArmError"]
