"""CHITA's block method: the block-diagonal approximation for large networks, with G held one
group of blocks at a time (see `chitalab.solver.block`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import torch

from ..errors import check_choice, check_int, check_number
from ..fisher import FisherGradients, GradientSource
from ..params import keep_count
from ..solver import (
    BlockSolveResult,
    BlockSwap,
    ColumnSource,
    SparsityConstraint,
    block_backsolve_path,
    block_workspace_bytes,
    gram_bytes_per_column,
    layer_blocks,
    layer_loss,
)
from ..solver.dead import RULES as DEAD_RULES
from .base import PruneContext, Pruner, PruneResult, bound_stats
from .chita import check_feasible, prepare_gradients
from .ridge_choice import L2Setting, RidgeChoice, l2_grid, l2_setting

log = logging.getLogger(__name__)

BlockSolve = Callable[[ColumnSource, list[tuple[int, int]], SparsityConstraint], list[BlockSolveResult]]
"""(columns, groups, constraint) -> results: a block solver given G's column source, the plan's
groups and the constraint bound to this problem; one result per ridge λ of the pruner's grid."""


def prune_by_blocks(
    ctx: PruneContext,
    source: GradientSource,
    blocks: list[tuple[int, int]],
    compute: torch.dtype,
    solve: BlockSolve,
    label: str,
    k: int,
    l2s: list[float],
    ridge_choice: RidgeChoice | None = None,
    column_workspace: int = 0,
) -> PruneResult:
    """Plan G by column groups of whole `blocks`, bind the constraint to w̄, k and the local model
    (the refitted per-layer loss of the same blocks under the first ridge of `l2s`, G read per
    group), run `solve` with gradients computed per group, keep the λ of `l2s` that `ridge_choice`
    picks on held-out training samples when there are several, and time the Fisher and the solve
    apart. `column_workspace`: bytes the solver holds per column of a group (see `plan_fisher`). Shared by the block pruners (CHITA, WoodFisher)."""
    workspace = block_workspace_bytes(source.n_samples, blocks, compute)
    fisher: FisherGradients = prepare_gradients(
        ctx,
        source,
        cuts=[stop for _, stop in blocks],
        workspace=workspace,
        hint="lower the pruner's block_size",
        column_workspace=column_workspace,
    )
    start, setup_seconds = time.perf_counter(), fisher.seconds
    w_bar = ctx.pruned.flatten()
    bound = ctx.constraint.bind(w_bar, k, layer_loss(fisher.columns, l2s[0], blocks, fisher.plan.groups))
    allocation = bound_stats(ctx, bound)
    ctx = dataclasses.replace(ctx, constraint=bound)
    results = solve(fisher.columns, fisher.plan.groups, ctx.constraint)
    choice: dict = {}
    result = results[0]
    if len(results) > 1:
        assert ridge_choice is not None, "a grid of ridges needs a RidgeChoice"
        l2, choice = ridge_choice(ctx, w_bar, {value: r.w for value, r in zip(l2s, results)})
        result = results[l2s.index(l2)]
    solver_seconds = time.perf_counter() - start - (fisher.seconds - setup_seconds)
    check_feasible(ctx, result.w, k, label)
    stats = {**result.stats(), "k": k, **choice, **fisher.summary(), **allocation}
    log.info(
        "%s: objective %.6g (magnitude pruning: %.6g), %d blocks in %d group(s), %d dead columns left out, %s%.2fs solving",
        label,
        result.objective,
        result.objective_magnitude,
        result.num_blocks,
        result.num_groups,
        result.dead_columns_left_out,
        f"l2 {choice['l2_chosen']:g} chosen of {len(results)} on held-out training loss, " if choice else "",
        solver_seconds,
    )
    w_dtype = ctx.pruned.params[0].dtype
    return PruneResult(
        weights=result.w.to(w_dtype), fisher_seconds=fisher.seconds, solver_seconds=solver_seconds, stats=stats
    )


class ChitaBlockPruner(Pruner):
    """Block-diagonal CHITA-BSO: the constraint's support of w̄ (one global threshold by
    default), each block refitted exactly under the ridge `l2` from its own columns of G.
    Layers are cut into blocks of about `block_size` weights (whole output channels); G may be
    stored in bfloat16/float16 (blocks are solved in float32, float64 when G is). `l2` may be a
    grid (a list, or "auto"): every λ is fitted in the same pass over G, sharing each block's
    Gram matrix, and `ridge_choice` keeps the one of lowest held-out training loss. Dead
    coordinates (`dead_columns`, `dead_rtol`) are handled as in `ChitaPruner`. With `search`
    (`BlockSwap`), the backsolve is the start of a support search over all blocks (moves within
    and between blocks scored by the exact block refit), per λ."""

    name = "chita_block"

    def __init__(
        self,
        gradients: GradientSource,
        l2: L2Setting = 1e-4,
        block_size: int = 500,
        dead_columns: str = "drop",
        dead_rtol: float = 0.0,
        ridge_choice: RidgeChoice | None = None,
        search: BlockSwap | None = None,
    ):
        self.gradients = gradients
        self.search = search
        self.l2_grid = l2_grid("l2", l2)
        self.ridge_choice = ridge_choice or RidgeChoice()
        self.block_size = check_int("block_size", block_size, 1)
        self.dead_columns = check_choice("dead_columns", dead_columns, DEAD_RULES)
        self.dead_rtol = check_number("dead_rtol", dead_rtol, 0)

    def samples_needed(self) -> int:
        return max(self.gradients.samples_needed, self.ridge_choice.samples if len(self.l2_grid) > 1 else 0)

    def label(self) -> str:
        return "CHITA (block)" if self.search is None else "CHITA (block, swap)"

    def settings(self) -> dict:
        return {
            "name": self.name,
            "l2": l2_setting(self.l2_grid),
            "ridge_choice": self.ridge_choice.settings(),
            "block_size": self.block_size,
            "dead_columns": self.dead_columns,
            "dead_rtol": self.dead_rtol,
            "search": None if self.search is None else self.search.settings(),
            "gradients": self.gradients.settings(),
        }

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        """Frozen weights are zero in w̄, so the magnitude support skips them while k does not
        exceed the surviving weights."""
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())
        blocks = layer_blocks(ctx.pruned.shapes, self.block_size)
        compute = torch.float64 if self.gradients.dtype == "float64" else torch.float32
        dead_rtol = self.dead_rtol if self.dead_columns == "drop" else None
        search = None if self.search is None else self.search.searcher(w_bar, ctx.frozen)

        def solve(
            columns: ColumnSource, groups: list[tuple[int, int]], constraint: SparsityConstraint
        ) -> list[BlockSolveResult]:
            return block_backsolve_path(
                w_bar, k, blocks, columns, self.l2_grid, groups, compute, constraint, dead_rtol, search
            )

        grams = 0 if self.search is None else gram_bytes_per_column(blocks, compute)
        return prune_by_blocks(
            ctx, self.gradients, blocks, compute, solve, self.label(), k, self.l2_grid, self.ridge_choice, grams
        )
