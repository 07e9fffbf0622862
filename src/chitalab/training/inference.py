"""Fast evaluation outside any Trainer: `torch.inference_mode`, no metric objects, no host sync
per batch (the counts stay on the device until the end), and optionally `channels_last` for
4-d inputs. Imports neither Lightning nor torchmetrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..models import loss_function


def test_metrics(acc: float, loss: float) -> dict[str, float]:
    """The one naming of an evaluation everywhere (results, trajectories, loggers)."""
    return {"test_acc": acc, "test_loss": loss}


@contextmanager
def memory_format(net: nn.Module, channels_last: bool) -> Iterator[None]:
    """Hold `net`'s 4-d weights in channels_last inside the block (a no-op when false), and
    restore the contiguous layout after. Parameters stay the same objects (only their data
    moves), so references to them (the pruned weights) remain valid."""
    if not channels_last:
        yield
        return
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "change the memory format outside inference mode: the weights would become inference tensors"
        )
    net.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        net.to(memory_format=torch.contiguous_format)


def as_input(x: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """A batch on `device`, in channels_last when asked for and 4-d."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def evaluate_model(
    net: nn.Module, dataloader: Iterable[tuple[Tensor, Tensor]], num_classes: int = 0, channels_last: bool = False
) -> dict[str, float]:
    """`test_metrics` of `net` in eval mode: top-1 accuracy in percent (ties: the first
    maximum, as torchmetrics' micro accuracy) and the mean loss per sample. Local by design
    (no cross-process sync: rank 0 only under DDP). Restores the mode. `num_classes` is not
    needed and kept for the callers' signature. The layout is changed outside inference mode,
    so the weights never become inference tensors (a later backward pass needs them)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    loss_fn = loss_function(net)
    correct = torch.zeros((), dtype=torch.long, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        with memory_format(net, channels_last), torch.inference_mode():
            for x, y in dataloader:
                y = y.to(device, non_blocking=True)
                out = net(as_input(x, device, channels_last))
                correct += (out.argmax(dim=1) == y).sum()
                total_loss += loss_fn(out, y, reduction="sum").double()
                count += y.numel()
    finally:
        net.train(was_training)
    count = max(count, 1)
    return test_metrics(100.0 * int(correct) / count, float(total_loss) / count)
