"""edgesel server: picks, for each edge device, the compressed DNN model with the best QoE."""

__version__ = "0.1.0"
