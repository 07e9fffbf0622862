"""Re-estimating BatchNorm statistics on training data (before evaluating, or after pruning)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from ..progress import progress as progress_bar

log = logging.getLogger(__name__)


@torch.inference_mode()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    progress: bool = True,
    channels_last: bool = False,
) -> int:
    """Replace the running mean and variance of every BatchNorm layer by their average over
    one pass of `batches` in train mode (torch's `update_bn`: momentum None, a cumulative, not
    exponential, average). Weights are untouched; the model's mode and momenta are restored. Returns the
    number of BatchNorm layers (0: nothing to do, no pass is made). `channels_last` feeds 4-d
    batches in that memory format (the model should be converted too; same statistics).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    device = next(model.parameters()).device
    inputs = (
        x.to(device).contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x.to(device)
        for x, _ in progress_bar(batches, "BatchNorm statistics", "batch", progress)
    )
    update_bn(inputs, model)
    log.info("re-estimated the statistics of %d BatchNorm layers on training batches", len(norms))
    return len(norms)
