"""The damped step: scale a solver's move on its support by the step length that gives the
lowest loss on fresh training samples (never test data)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ArgumentError, check_int
from .base import PruneContext

PURPOSE = "step_search"


@torch.no_grad()
def mean_loss(ctx: PruneContext, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Mean loss of the model on (x, y), in batches."""
    total = sum(
        float(ctx.loss_fn(ctx.model(x[i : i + batch_size]), y[i : i + batch_size], reduction="sum"))
        for i in range(0, len(x), batch_size)
    )
    return total / len(x)


class StepSearch:
    """w_t = P(w̄) + t·(w − P(w̄)) for t in `sizes`, P keeping w's support (t = 1 is the
    solver's solution); the t with the lowest mean loss on `samples` fresh training samples
    (their own draw) wins. The support never changes, so the constraint still holds."""

    def __init__(self, sizes: Sequence[float] = (0.25, 0.5, 1.0, 2.0), samples: int = 2000, batch_size: int = 512):
        values = list(sizes)
        if not values or any(
            isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf") for t in values
        ):
            raise ArgumentError("sizes", f"sizes={values!r} is not allowed; give one or more finite positive numbers")
        self.sizes = [float(t) for t in values]
        self.samples = check_int("samples", samples, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def settings(self) -> dict:
        return dict(vars(self))

    def __call__(self, ctx: PruneContext, w_bar: Tensor, w: Tensor) -> tuple[Tensor, dict]:
        """The best damped point between the kept dense weights and w, and the losses seen.
        The model is left with w̄ (single-stage pruners leave it as they found it)."""
        kept = w_bar * (w != 0)
        x, y = ctx.draw(PURPOSE, self.samples)
        x, y = x.to(w.device), y.to(w.device)
        losses = {}
        for t in self.sizes:
            ctx.pruned.assign(kept + t * (w - kept))
            losses[t] = mean_loss(ctx, x, y, self.batch_size)
        ctx.pruned.assign(w_bar)
        best = min(losses, key=lambda t: losses[t])
        return kept + best * (w - kept), {"step_size": best, "step_losses": losses}
