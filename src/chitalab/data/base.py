"""Data modules that hold their (small) data sets as tensors in memory."""

from __future__ import annotations

from abc import abstractmethod

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset


class TensorDataModule(pl.LightningDataModule):
    """Train and test splits as in-memory tensors; subclasses implement `load`.

    Keeping the pixels normalised in memory makes evaluation and Fisher sampling fast
    for MNIST/CIFAR-sized data (no per-sample PIL transforms).
    """

    def __init__(self, batch_size: int = 1000, num_workers: int = 0, shuffle: bool = True):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.train_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return normalised (x_train, y_train, x_test, y_test)."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            x_train, y_train, x_test, y_test = self.load()
            self.train_set = TensorDataset(x_train, y_train)
            self.test_set = TensorDataset(x_test, y_test)

    @property
    def num_train(self) -> int:
        self.setup()
        return len(self.train_set)

    def sample_shape(self) -> tuple[int, ...]:
        self.setup()
        return tuple(self.train_set.tensors[0].shape[1:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size, num_workers=self.num_workers)

    def draw_training_samples(self, count: int, seed: int, round: int = 0) -> tuple[Tensor, Tensor]:
        """`count` distinct training samples chosen at random; reproducible through `seed`,
        and a different draw for each `round` (pruning stage or step)."""
        self.setup()
        if count > len(self.train_set):
            raise ValueError(f"asked for {count} samples, the training set has {len(self.train_set)}")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + round)
        index = torch.randperm(len(self.train_set), generator=gen)[:count]
        x, y = self.train_set.tensors
        return x[index], y[index]
