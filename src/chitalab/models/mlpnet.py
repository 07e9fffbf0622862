"""MLPNet from the CHITA paper: 784-40-20-10, ReLU, no biases, log-softmax output."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MLPNet(nn.Module):
    """Fully connected net on flattened inputs; returns log-probabilities (train with NLL)."""

    outputs_log_probs = True

    def __init__(self, in_features: int = 784, hidden: tuple[int, ...] | list[int] = (40, 20), num_classes: int = 10):
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(fan_in, fan_out, bias=False))
        self.depth = len(sizes) - 1

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.depth:
                x = F.relu(x)
        return F.log_softmax(x, dim=1)
