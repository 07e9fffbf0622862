"""Re-estimating BatchNorm statistics on training data (before evaluating, or after pruning)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@torch.inference_mode()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    progress: bool = True,
    channels_last: bool = False,
) -> int:
    """Replace the running mean and variance of every BatchNorm layer by their average over
    one pass of `batches` in train mode (momentum None: a cumulative, not exponential,
    average). Weights are untouched; the model's mode and momenta are restored. Returns the
    number of BatchNorm layers (0: nothing to do, no pass is made). `channels_last` feeds 4-d
    batches in that memory format (the model should be converted too; same statistics).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    device = next(model.parameters()).device
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for x, _ in tqdm(batches, desc="BatchNorm statistics", unit="batch", disable=not progress, leave=False):
            x = x.to(device)
            model(x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    log.info("re-estimated the statistics of %d BatchNorm layers on training batches", len(norms))
    return len(norms)
