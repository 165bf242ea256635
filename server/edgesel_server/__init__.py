"""edgesel server: picks, for each edge device, the compressed DNN model with the best QoE."""

import importlib.metadata

# The one version of every edgesel distribution is core-rs/Cargo.toml's; maturin puts it into the metadata.
__version__ = importlib.metadata.version("edgesel-server")
