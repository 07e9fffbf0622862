"""The dense baseline cache: what a one-shot job does before pruning, done once per sweep.

Every job of a sweep re-estimates the BatchNorm statistics of the same checkpoint on the same
training samples and evaluates the same dense model. The cache keeps the re-estimated buffers
and the dense test metrics under a SHA-256 key over every tensor of the model's state and the
settings that determine both (data set config, re-estimation count, seed, memory format,
device); a hit restores the buffers and skips both passes. Entries are written under a
temporary name and renamed, so a killed job leaves none half-written; an unreadable entry is
removed with a warning and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..fisher.store import add_tensors

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when re-estimation or evaluation changes what they compute


@dataclass(frozen=True)
class DenseBaseline:
    """The model's buffers after re-estimation, and its test metrics."""

    buffers: dict[str, Tensor]
    test_acc: float
    test_loss: float


def baseline_key(model: nn.Module, settings: dict[str, Any]) -> str:
    """SHA-256 over the model's state before re-estimation and the settings (JSON-able)."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, settings], sort_keys=True, default=str).encode())
    add_tensors(h, model.state_dict().items())
    return h.hexdigest()


class DenseCache:
    """Dense baselines under `root`, one small file per key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> DenseBaseline | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return DenseBaseline(dict(data["buffers"]), float(data["test_acc"]), float(data["test_loss"]))
        except Exception as err:  # any unreadable file is recomputed, whatever the reader raised
            log.warning("dense baseline cache: entry %s is unusable (%s); removed, recomputing", path.name, err)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, baseline: DenseBaseline) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            data = {"buffers": baseline.buffers, "test_acc": baseline.test_acc, "test_loss": baseline.test_loss}
            torch.save(data, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
