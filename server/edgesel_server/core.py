"""The bandit core (Rust, ``edgesel_server._core``), re-exported for the rest of the server.

The policy table (``POLICIES``, ``uses_model_features``) lives in the Rust core (``core-rs/src/params.rs``);
see docs/core.md for the models, the joint feature map, the API and the snapshot format.
"""

from edgesel_server._core import (
    POLICIES as BANDIT_POLICIES,
)
from edgesel_server._core import (
    Bandit,
    CoreError,
    QoeModel,
    Selection,
    SnapshotError,
    UnknownArmError,
    __version__,
    uses_model_features,
)

# `qoe_model` (the server's default) is its own class, QoeModel (docs/core.md, "The QoE model"); the others
# are the policies of Bandit's policy table.
POLICIES = ("qoe_model", *BANDIT_POLICIES)

__all__ = [
    "BANDIT_POLICIES",
    "POLICIES",
    "Bandit",
    "CoreError",
    "QoeModel",
    "Selection",
    "SnapshotError",
    "UnknownArmError",
    "__version__",
    "uses_model_features",
]
