"""Model definitions and pretrained-weight loading."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ..errors import UserError
from .checkpoint import load_checkpoint
from .mlpnet import MLPNet
from .mobilenet import MobileNetV1
from .resnet_cifar import CifarResNet, resnet20
from .timm_models import create_timm_model

log = logging.getLogger(__name__)

__all__ = [
    "CifarResNet",
    "MLPNet",
    "MobileNetV1",
    "build_model",
    "create_timm_model",
    "load_checkpoint",
    "loss_function",
    "resnet20",
]


def build_model(cfg: DictConfig) -> nn.Module:
    """Instantiate `cfg.net` (timm-built nets fetch their weights when `cfg.pretrained` is set)
    and load `cfg.checkpoint` when one is set."""
    if cfg.get("pretrained") and cfg.get("checkpoint"):
        raise UserError("model.pretrained=true and model.checkpoint are both set; choose one weight source")
    model = instantiate(cfg.net)
    if cfg.get("checkpoint"):
        load_checkpoint(model, cfg.checkpoint, cfg.get("checkpoint_url"))
        log.info("loaded weights from %s", cfg.checkpoint)
    elif not cfg.get("pretrained"):
        log.warning("model.checkpoint is not set: pruning randomly initialised weights")
    return model


def loss_function(model: nn.Module):
    """NLL for models that output log-probabilities (MLPNet), cross-entropy on logits otherwise."""
    return F.nll_loss if getattr(model, "outputs_log_probs", False) else F.cross_entropy
