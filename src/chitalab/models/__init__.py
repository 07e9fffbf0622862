"""Model definitions and pretrained-weight loading."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ..params import check_finite_state
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
    "ModelSpec",
    "create_timm_model",
    "load_checkpoint",
    "load_model",
    "loss_function",
    "resnet20",
]


@dataclass(frozen=True)
class ModelSpec:
    """A model config, read: the network (random or timm-pretrained weights), where its weights
    come from, whether BatchNorm statistics are re-estimated (on how many training samples), and which weights are pruned
    (shell-style patterns on weight names)."""

    name: str
    net: nn.Module
    checkpoint: str | None = None
    checkpoint_url: str | None = None
    pretrained: bool = False
    trust_checkpoint: bool = False  # allow full unpickling of `checkpoint` (it can run code)
    bn_recalibration: bool = False
    bn_recalibration_samples: int | None = None  # None: one full pass over the training batches
    include: tuple[str, ...] | list[str] = ("*",)
    exclude: tuple[str, ...] | list[str] = ()


def load_model(spec: ModelSpec) -> nn.Module:
    """The spec's network with `spec.checkpoint` loaded when one is set (timm-built nets bring
    their weights when `pretrained`)."""
    if spec.checkpoint:
        load_checkpoint(spec.net, spec.checkpoint, spec.checkpoint_url, spec.trust_checkpoint)
        log.info("loaded weights from %s", spec.checkpoint)
        check_finite_state(spec.net, f"in the checkpoint {spec.checkpoint}", "check the checkpoint")
    else:
        if not spec.pretrained:
            log.warning("model.checkpoint is not set: pruning randomly initialised weights")
        check_finite_state(spec.net, "in the model's weights", "check model.pretrained and the model config")
    return spec.net


def loss_function(model: nn.Module):
    """NLL for models that output log-probabilities (MLPNet), cross-entropy on logits otherwise."""
    return F.nll_loss if getattr(model, "outputs_log_probs", False) else F.cross_entropy
