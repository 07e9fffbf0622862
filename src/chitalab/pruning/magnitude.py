"""MP: magnitude pruning under the sparsity constraint (global by default)."""

from __future__ import annotations

import time

from ..params import keep_count
from .base import PruneContext, Pruner, PruneResult, bound_stats


class MagnitudePruner(Pruner):
    """Keep the allowed support of largest magnitude (one global threshold by default)."""

    name = "mp"

    def label(self) -> str:
        return "MP"

    def settings(self) -> dict:
        return {"name": self.name}

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        start = time.perf_counter()
        w_bar = ctx.pruned.flatten()
        if ctx.frozen is not None:
            w_bar = w_bar.masked_fill(ctx.frozen, 0)
        k = keep_count(sparsity, w_bar.numel())
        bound = ctx.constraint.bind(w_bar, k, None)
        w, _ = bound.project(w_bar, k)
        return PruneResult(weights=w, solver_seconds=time.perf_counter() - start, stats=bound_stats(ctx, bound))
