"""The ridge λ chosen on held-out training samples.

No single λ serves every sparsity (on MLPNet small λ wins at 0.9-0.95 and a larger one at
0.98, and the best λ differs by solver), so `pruner.l2` may be a grid, or `auto` for
`AUTO_GRID`: the pruner solves once per λ on the same G and keeps the solution whose pruned
model has the lowest mean loss on a draw of training samples of its own (purpose
"ridge_search"), never on test data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import Tensor

from ..errors import ArgumentError, check_int, check_number
from .base import PruneContext
from .step_search import mean_loss

log = logging.getLogger(__name__)
PURPOSE = "ridge_search"
AUTO = "auto"
AUTO_GRID = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
"""λ tried by `l2: auto`, decades (the choices per sparsity: docs/reports/search_mlpnet)."""
AUTO_LIMITS = (1e-10, 1.0)
"""How far a pruner widens `AUTO_GRID`, a decade at a time, while its choice sits at an edge."""

L2Setting = float | str | Sequence[float]


def l2_grid(name: str, value: L2Setting, low: float = 0.0) -> list[float]:
    """The λ values a pruner tries for `value`: a number (one λ), a list (a grid, sorted and
    without repeats) or "auto" (`AUTO_GRID`), each a finite number >= `low`; an ArgumentError
    naming `name` otherwise."""
    if isinstance(value, str):
        if value != AUTO:
            raise ArgumentError(name, f"{name}={value!r} is not allowed; give a number, a list of numbers or {AUTO}")
        return list(AUTO_GRID)
    if isinstance(value, (bool, int, float)):
        return [check_number(name, value, low)]
    values = list(value)
    if not values:
        raise ArgumentError(name, f"{name}=[] is not allowed; give a number, a list of numbers or {AUTO}")
    return sorted({check_number(name, v, low) for v in values})


def l2_setting(grid: list[float]) -> float | list[float]:
    """How results.json records a grid: one λ as a number, a grid as its list."""
    return grid[0] if len(grid) == 1 else list(grid)


class RidgeChoice:
    """Picks, among candidate weights (one per λ), the one whose pruned model has the lowest mean
    loss on `samples` training samples of their own draw; evaluated in batches of `batch_size`."""

    def __init__(self, samples: int = 2000, batch_size: int = 512):
        self.samples = check_int("samples", samples, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def settings(self) -> dict:
        return dict(vars(self))

    def __call__(self, ctx: PruneContext, w_bar: Tensor, candidates: dict[float, Tensor]) -> tuple[float, dict]:
        """The chosen λ and what results.json records of the choice (λ and every candidate's
        held-out loss). The model is left with w̄."""
        return self.choose(self.heldout_losses(ctx, w_bar, candidates))

    def heldout_losses(self, ctx: PruneContext, w_bar: Tensor, candidates: dict[float, Tensor]) -> dict[float, float]:
        """Each candidate's mean loss on the held-out draw (the same draw at every call of one
        step and stage, so losses from several calls compare). The model is left with w̄."""
        x, y = ctx.draw(PURPOSE, self.samples)
        x, y = x.to(w_bar.device), y.to(w_bar.device)
        losses = {}
        for l2, w in candidates.items():
            ctx.pruned.assign(w.to(w_bar.dtype))
            losses[l2] = mean_loss(ctx, x, y, self.batch_size)
        ctx.pruned.assign(w_bar)
        return losses

    def choose(self, losses: dict[float, float]) -> tuple[float, dict]:
        """The λ of lowest held-out loss, and the record of the choice."""
        chosen = min(losses, key=lambda l2: losses[l2])
        if len(losses) > 2 and chosen in (min(losses), max(losses)):
            log.info(
                "l2 %g, chosen on held-out training loss, is at the edge of the grid; a wider grid may do better",
                chosen,
            )
        return chosen, {"l2_chosen": chosen, "l2_heldout_losses": {f"{l2:g}": loss for l2, loss in losses.items()}}
