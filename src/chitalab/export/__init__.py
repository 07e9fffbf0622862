"""From zeros to payoff: sparse checkpoints, ONNX, 2:4 semi-structured weights, and the
measured size, MACs and CPU latency of a pruned model (`python -m chitalab.export`)."""

from __future__ import annotations

from .macs import LayerMacs, measure_layer_macs, total_macs
from .payoff import LoggedModel, deploy_summary, log_model_artifact
from .sparse_format import SPARSE_FILE, load_sparse, save_sparse

__all__ = [
    "SPARSE_FILE",
    "LayerMacs",
    "LoggedModel",
    "deploy_summary",
    "load_sparse",
    "log_model_artifact",
    "measure_layer_macs",
    "save_sparse",
    "total_macs",
]
