"""The dense baseline cache: what a one-shot job does before pruning, done once per sweep.

Every job of a sweep re-estimates the BatchNorm statistics of the same checkpoint on the same
training samples and evaluates the same dense model. The cache keeps the re-estimated buffers
and the dense test metrics under a SHA-256 key over every tensor of the model's state and the
settings that determine both (data set config, re-estimation count, seed, memory format,
device); a hit restores the buffers and skips both passes. Entries are written under a
temporary name and renamed, so a killed job leaves none half-written. Each entry carries a
SHA-256 of its payload (buffers and metrics), checked on every read: an unreadable or altered
entry is removed with a warning and recomputed. The cache is optional: a folder that cannot be
created, read or written (read-only, full, no permission) is one warning, and the job goes on
without it.
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
from ..outputs import save_torch

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


def payload_digest(baseline: DenseBaseline) -> str:
    """SHA-256 over an entry's payload: every buffer (name, dtype, shape, bytes) and both metrics."""
    h = hashlib.sha256(json.dumps([baseline.test_acc, baseline.test_loss]).encode())
    add_tensors(h, sorted(baseline.buffers.items()))
    return h.hexdigest()


class DenseCache:
    """Dense baselines under `root`, one small file per key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.usable = True  # false after the folder failed once: warned, and not tried again

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> DenseBaseline | None:
        path = self.path(key)
        if not self.usable or not path.exists():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            baseline = DenseBaseline(dict(data["buffers"]), float(data["test_acc"]), float(data["test_loss"]))
            if data.get("sha256") != payload_digest(baseline):
                raise ValueError("its checksum does not match its contents")
            return baseline
        except OSError as err:
            self.unusable(err)
            return None
        except Exception as err:  # any unreadable file is recomputed, whatever the reader raised
            log.warning("dense baseline cache: entry %s is unusable (%s); removed, recomputing", path.name, err)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return None

    def save(self, key: str, baseline: DenseBaseline) -> bool:
        """Write the entry (True), or warn once and go on without the cache (False)."""
        if not self.usable:
            return False
        path = self.path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            data = {
                "buffers": baseline.buffers,
                "test_acc": baseline.test_acc,
                "test_loss": baseline.test_loss,
                "sha256": payload_digest(baseline),
            }
            save_torch(data, tmp)
            os.replace(tmp, path)
            return True
        except OSError as err:
            self.unusable(err)
            return False
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def unusable(self, err: Exception) -> None:
        """One warning naming the folder and the switch; the job goes on without the cache."""
        if self.usable:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).split("\n")[0]
            log.warning(
                "dense baseline cache: cannot use %s (%s); going on without it (cache.dense=false turns it off)",
                self.root,
                reason,
            )
        self.usable = False
