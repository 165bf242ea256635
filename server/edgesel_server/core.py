"""The bandit core (Rust, ``edgesel_server._core``), re-exported for the rest of the server.

See docs/core.md for the models, the joint feature map, the API and the snapshot format.
"""

from edgesel_server._core import Bandit, SnapshotError, UnknownArmError

POLICIES = ("disjoint_linucb", "hybrid_linucb", "lin_ts")

__all__ = ["POLICIES", "Bandit", "SnapshotError", "UnknownArmError"]
