"""edgesel client SDK: ask which compressed DNN model this edge device should run, report the QoE it gave.

from edgesel_client import EdgeselClient

with EdgeselClient("edgesel.example:443", space="image-classification", token="...", secure=True) as c:
    selection = c.select()
    ...  # download selection.artifact_uri, run it, measure
    selection.feedback(latency_ms=42.0, user_rating=4)
"""

import importlib.metadata

from edgesel_client.aio import AsyncEdgeselClient
from edgesel_client.client import EdgeselClient
from edgesel_client.device import (
    DEVICE_FEATURE_NAMES,
    DEVICE_LABEL_NAMES,
    DeviceInfo,
    detect_device,
    detect_device_features,
    detect_device_labels,
)
from edgesel_client.errors import EdgeselError
from edgesel_client.offline import ClientStats, FeedbackQueue
from edgesel_client.preferences import Preferences
from edgesel_client.retry import RetryPolicy
from edgesel_client.selection import (
    ActivationOutcome,
    ActivationReceipt,
    AsyncSelection,
    BaseSelection,
    FeedbackOutcome,
    FeedbackReceipt,
    RankedModel,
    Selection,
)

# The one version of every edgesel distribution is core-rs/Cargo.toml's (client/pyproject.toml reads it).
try:
    __version__ = importlib.metadata.version("edgesel-client")
except importlib.metadata.PackageNotFoundError:
    # Copied into an app or frozen without its metadata: the SDK still works, without a version.
    __version__ = "0+unknown"

__all__ = [
    "DEVICE_FEATURE_NAMES",
    "DEVICE_LABEL_NAMES",
    "ActivationOutcome",
    "ActivationReceipt",
    "AsyncEdgeselClient",
    "AsyncSelection",
    "BaseSelection",
    "ClientStats",
    "DeviceInfo",
    "EdgeselClient",
    "EdgeselError",
    "FeedbackOutcome",
    "FeedbackQueue",
    "FeedbackReceipt",
    "Preferences",
    "RankedModel",
    "RetryPolicy",
    "Selection",
    "__version__",
    "detect_device",
    "detect_device_features",
    "detect_device_labels",
]
