"""The paper's networks with their checkpoints and training samples, for Fisher benchmarks
and ResNet20-sized solver problems; random inputs or weights when the files are absent."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from chitalab.data import CIFAR10DataModule, MNISTDataModule
from chitalab.errors import UserError
from chitalab.models import MLPNet, load_checkpoint, loss_function, resnet20
from chitalab.params import PrunedParams, select_pruned
from chitalab.pruning import DrawKey, SampleStream

MODELS = ("mlpnet", "resnet20")
CHECKPOINTS = {"mlpnet": "mnist_25_epoch_93.97.ckpt", "resnet20": "resnet20_cifar10.pth.tar"}
INPUT_SHAPES = {"mlpnet": (1, 28, 28), "resnet20": (3, 32, 32)}


@dataclass
class Workload:
    """A network in eval mode, its pruned weights, loss and n training samples."""

    name: str
    model: nn.Module
    pruned: PrunedParams
    loss_fn: object
    x: Tensor
    y: Tensor
    source: str  # where the weights and samples came from


def _data_module(name: str, data_dir: str, cache_dir: str):
    if name == "mlpnet":
        return MNISTDataModule(data_dir, cache_dir, download=False)
    return CIFAR10DataModule(data_dir, cache_dir, download=False, augment=False)


def load_workload(name: str, n: int, device: torch.device, seed: int = 0) -> Workload:
    """`name` (mlpnet or resnet20) with its checkpoint and n training samples, on `device`.
    Directories come from CHITA_DATA_DIR / CHITA_CHECKPOINT_DIR / CHITA_CACHE_DIR."""
    data_dir = os.environ.get("CHITA_DATA_DIR", "data")
    checkpoint = Path(os.environ.get("CHITA_CHECKPOINT_DIR", "checkpoints")) / CHECKPOINTS[name]
    cache_dir = os.environ.get("CHITA_CACHE_DIR", ".cache")
    model = MLPNet() if name == "mlpnet" else resnet20()
    sources = []
    if checkpoint.is_file():
        load_checkpoint(model, checkpoint)
        sources.append(f"checkpoint {checkpoint.name}")
    else:
        sources.append("random weights (no checkpoint)")
    try:
        data = _data_module(name, data_dir, cache_dir)
        data.setup()
        x, y = SampleStream(data, seed).draw(n, DrawKey("fisher"))
        sources.append("training samples")
    except (UserError, ValueError, OSError):
        gen = torch.Generator().manual_seed(seed)
        x, y = torch.randn(n, *INPUT_SHAPES[name], generator=gen), torch.randint(0, 10, (n,), generator=gen)
        sources.append("random inputs (no data set)")
    model = model.to(device).eval()
    exclude = ["*.downsample.*"] if name == "resnet20" else []
    return Workload(
        name,
        model,
        select_pruned(model, exclude=exclude),
        loss_function(model),
        x.to(device),
        y.to(device),
        ", ".join(sources),
    )
