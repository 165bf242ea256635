"""The bandit core (Rust, ``edgesel_server._core``), re-exported for the rest of the server.

The policy table (``POLICIES``, ``uses_model_features``) lives in the Rust core (``core-rs/src/params.rs``);
see docs/core.md for the models, the joint feature map, the API and the snapshot format.
"""

from edgesel_server._core import (
    POLICIES,
    Bandit,
    CoreError,
    Selection,
    SnapshotError,
    UnknownArmError,
    __version__,
    uses_model_features,
)

__all__ = [
    "POLICIES",
    "Bandit",
    "CoreError",
    "Selection",
    "SnapshotError",
    "UnknownArmError",
    "__version__",
    "uses_model_features",
]
