"""Model definitions and pretrained-weight loading."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from omegaconf import DictConfig
from hydra.utils import instantiate
from torch import nn

from .checkpoint import load_checkpoint
from .mlpnet import MLPNet

log = logging.getLogger(__name__)

__all__ = ["MLPNet", "build_model", "load_checkpoint", "loss_function"]


def build_model(cfg: DictConfig) -> nn.Module:
    """Instantiate `cfg.net` and load `cfg.checkpoint` when one is set."""
    model = instantiate(cfg.net)
    if cfg.get("checkpoint"):
        load_checkpoint(model, cfg.checkpoint, cfg.get("checkpoint_url"))
        log.info("loaded weights from %s", cfg.checkpoint)
    else:
        log.warning("model.checkpoint is not set: pruning randomly initialised weights")
    return model


def loss_function(model: nn.Module):
    """NLL for models that output log-probabilities (MLPNet), cross-entropy on logits otherwise."""
    return F.nll_loss if getattr(model, "outputs_log_probs", False) else F.cross_entropy
