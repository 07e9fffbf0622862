"""MP: global magnitude pruning."""

from __future__ import annotations

import time

from ..params import keep_count
from ..solver import hard_threshold
from .base import PruneContext, Pruner, PruneResult


class MagnitudePruner(Pruner):
    """Keep the weights of largest magnitude across all pruned layers."""

    name = "mp"

    def settings(self) -> dict:
        return {"name": self.name}

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        start = time.perf_counter()
        w_bar = ctx.pruned.flatten()
        if ctx.frozen is not None:
            w_bar = w_bar.masked_fill(ctx.frozen, 0)
        w, _ = hard_threshold(w_bar, keep_count(sparsity, w_bar.numel()))
        return PruneResult(weights=w, solver_seconds=time.perf_counter() - start)
