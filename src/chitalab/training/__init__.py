"""Training-time pieces: the LightningModule, the gradual-pruning callback, the learning-rate
schedule and BatchNorm re-estimation."""

from .batchnorm import recalibrate_batchnorm
from .checkpoint import LAST_CHECKPOINT, LastCheckpoint
from .gradual import GradualPruning, PrunableModule
from .lr import CosineRestarts, cosine_with_restarts
from .module import Classifier, evaluate_model, test_metrics

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
