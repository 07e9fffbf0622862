"""Named sample streams: every draw of training samples is identified by (purpose, step,
stage), so no two uses share a draw by construction.

A gradual run's pruning step s, a CHITA++ stage i, the Fisher's samples and the step
search's are all different keys; each key seeds its own generator through a hash of the key
and the run's seed, so draws cannot collide however many stages or steps a run has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


class TrainingSamples(Protocol):
    """What a stream draws from: a data module's training set, without augmentation."""

    @property
    def num_train(self) -> int: ...

    def training_samples(self, index: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class DrawKey:
    """What a draw is for: `purpose` ("fisher", "step_search", ...), the gradual pruning
    `step` and the multi-stage `stage` it belongs to."""

    purpose: str
    step: int = 0
    stage: int = 0

    def seed(self, run_seed: int) -> int:
        """A 63-bit generator seed from the run's seed and this key."""
        text = f"{run_seed}/{self.purpose}/{self.step}/{self.stage}".encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


@dataclass
class SampleStream:
    """Draws of distinct training samples, reproducible from `seed` and each draw's key.
    `drawn` lists the keys in the order they were drawn (for logs and tests)."""

    data: TrainingSamples
    seed: int
    drawn: list[DrawKey] = field(default_factory=list)

    def indices(self, count: int, key: DrawKey) -> Tensor:
        """The training-set indices of `count` distinct samples chosen at random for `key`
        (what `draw` returns the samples of)."""
        total = self.data.num_train
        if count > total:
            raise ValueError(f"asked for {count} samples, the training set has {total}")
        gen = torch.Generator().manual_seed(key.seed(self.seed))
        self.drawn.append(key)
        return torch.randperm(total, generator=gen)[:count]

    def draw(self, count: int, key: DrawKey) -> tuple[Tensor, Tensor]:
        """`count` distinct training samples chosen at random for `key`."""
        return self.data.training_samples(self.indices(count, key))
