"""Training-time augmentation applied to whole batches of normalised image tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class RandomCropFlip:
    """Random crop after zero padding, and a horizontal flip with probability 1/2, per image.

    The same as torchvision's RandomCrop(size, padding) + RandomHorizontalFlip() on the raw
    pixels: the padding takes `fill`, the normalised value of a black pixel ((0 − mean) / std
    per channel). Uses torch's global random generator (seeded by the experiment).
    """

    def __init__(self, padding: int = 4, fill: Sequence[float] | float = 0.0):
        self.padding = padding
        self.fill = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        p = self.padding
        padded = self.fill.to(x.dtype).expand(c, h + 2 * p, w + 2 * p).repeat(n, 1, 1, 1)
        padded[:, :, p : p + h, p : p + w] = x
        top = torch.randint(0, 2 * p + 1, (n, 1, 1, 1))
        left = torch.randint(0, 2 * p + 1, (n, 1, 1, 1))
        flip = torch.rand(n, 1, 1, 1) < 0.5
        rows = (top + torch.arange(h).reshape(1, 1, h, 1)).expand(n, c, h, w + 2 * p)
        offsets = torch.arange(w).reshape(1, 1, 1, w)
        cols = (left + torch.where(flip, w - 1 - offsets, offsets)).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)
