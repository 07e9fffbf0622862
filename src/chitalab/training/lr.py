"""The learning-rate schedule of gradual pruning: a cosine that restarts after each pruning step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import check_number


def cosine_with_restarts(step: int, restarts: Sequence[int], total_steps: int, min_ratio: float) -> float:
    """LR multiplier at `step`: a cosine from 1 to `min_ratio` over each segment between
    consecutive restart steps, the last segment ending at `total_steps`."""
    starts = sorted(s for s in restarts if s <= step) or [0]
    start = starts[-1]
    later = [s for s in restarts if s > step]
    end = later[0] if later else total_steps
    length = max(end - start, 1)
    progress = min((step - start) / length, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class CosineRestarts:
    """Builds the per-step scheduler: each parameter group's LR follows a cosine from its own
    LR to `lr_min`, restarting at the pruning epochs and decaying to the end of training
    after the last one."""

    def __init__(self, lr_min: float = 1e-5):
        self.lr_min = check_number("lr_min", lr_min, 0)

    def __call__(
        self, optimizer: torch.optim.Optimizer, restart_epochs: Sequence[int], total_steps: int, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        restarts = [e * steps_per_epoch for e in restart_epochs]
        ratios = [self.lr_min / group["lr"] if group["lr"] > 0 else 1.0 for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            [
                lambda step, ratio=ratio: cosine_with_restarts(step, restarts, total_steps, ratio)  # type: ignore[misc]
                for ratio in ratios
            ],
        )
