"""Training-time pieces: the LightningModule, the gradual-pruning callback, the learning-rate
schedule, BatchNorm re-estimation and fast evaluation.

Names are imported on first use (PEP 562), so a one-shot job that only re-estimates BatchNorm
statistics and evaluates never imports Lightning or torchmetrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .batchnorm import recalibrate_batchnorm
    from .checkpoint import LAST_CHECKPOINT, LastCheckpoint
    from .gradual import GradualPruning, PrunableModule
    from .inference import evaluate_model, test_metrics
    from .lr import CosineRestarts, cosine_with_restarts
    from .module import Classifier

_WHERE = {
    "LAST_CHECKPOINT": "checkpoint",
    "LastCheckpoint": "checkpoint",
    "Classifier": "module",
    "CosineRestarts": "lr",
    "GradualPruning": "gradual",
    "PrunableModule": "gradual",
    "cosine_with_restarts": "lr",
    "evaluate_model": "inference",
    "recalibrate_batchnorm": "batchnorm",
    "test_metrics": "inference",
}

__all__ = [
    "LAST_CHECKPOINT",
    "Classifier",
    "CosineRestarts",
    "GradualPruning",
    "LastCheckpoint",
    "PrunableModule",
    "cosine_with_restarts",
    "evaluate_model",
    "recalibrate_batchnorm",
    "test_metrics",
]


__getattr__ = lazy_getattr(__name__, _WHERE)
