"""A small learnable synthetic classification task for tests and smoke runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import TensorDataModule


class SyntheticDataModule(TensorDataModule):
    """Gaussian inputs of `input_shape`, labelled by a fixed random linear teacher.

    With `label_resolution` r, the teacher sees the images (C x H x W) average-pooled to
    C x r x r, so ImageNet-sized inputs need no teacher with 150k rows per class.
    """

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 256,
        input_shape: tuple[int, ...] | list[int] = (1, 8, 8),
        num_classes: int = 4,
        seed: int = 0,
        label_resolution: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        shuffle: bool = True,
    ):
        super().__init__(batch_size, num_workers, shuffle)
        self.num_train_samples = num_train
        self.num_test_samples = num_test
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.seed = seed
        self.label_resolution = label_resolution

    def data_source(self) -> str:
        return f"synthetic: {self.num_train_samples} + {self.num_test_samples} samples of shape {self.input_shape}, seed {self.seed}"

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        total = self.num_train_samples + self.num_test_samples
        x = torch.randn(total, *self.input_shape, generator=gen)
        features = x if self.label_resolution is None else F.adaptive_avg_pool2d(x, self.label_resolution)
        features = features.reshape(total, -1)
        teacher = torch.randn(features.shape[1], self.num_classes, generator=gen)
        y = (features @ teacher).argmax(dim=1)
        cut = self.num_train_samples
        return x[:cut], y[:cut], x[cut:], y[cut:]
