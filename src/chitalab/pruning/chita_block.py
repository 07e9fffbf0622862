"""CHITA's block method: the block-diagonal approximation for large networks, with G held one
group of blocks at a time (see `chitalab.solver.block`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import torch

from ..errors import check_int, check_number
from ..fisher import FisherGradients, GradientSource
from ..params import keep_count
from ..solver import (
    BlockSolveResult,
    ColumnSource,
    SparsityConstraint,
    block_backsolve,
    block_workspace_bytes,
    layer_blocks,
    layer_loss,
)
from .base import PruneContext, Pruner, PruneResult, bound_stats
from .chita import check_feasible, prepare_gradients

log = logging.getLogger(__name__)

BlockSolve = Callable[[ColumnSource, list[tuple[int, int]], SparsityConstraint], BlockSolveResult]
"""(columns, groups, constraint) -> result: a block solver given G's column source, the plan's
groups and the constraint bound to this problem."""


def prune_by_blocks(
    ctx: PruneContext,
    source: GradientSource,
    blocks: list[tuple[int, int]],
    compute: torch.dtype,
    solve: BlockSolve,
    label: str,
    k: int,
    l2: float,
) -> PruneResult:
    """Plan G by column groups of whole `blocks`, bind the constraint to w̄, k and the local model
    (the refitted per-layer loss of the same blocks under the ridge `l2`, G read per group),
    run `solve` with gradients computed per group, and time the Fisher and the solve apart.
    Shared by the block pruners (CHITA, WoodFisher)."""
    workspace = block_workspace_bytes(source.n_samples, blocks, compute)
    fisher: FisherGradients = prepare_gradients(
        ctx, source, cuts=[stop for _, stop in blocks], workspace=workspace, hint="lower the pruner's block_size"
    )
    start, setup_seconds = time.perf_counter(), fisher.seconds
    bound = ctx.constraint.bind(ctx.pruned.flatten(), k, layer_loss(fisher.columns, l2, blocks, fisher.plan.groups))
    allocation = bound_stats(ctx, bound)
    ctx = dataclasses.replace(ctx, constraint=bound)
    result = solve(fisher.columns, fisher.plan.groups, ctx.constraint)
    solver_seconds = time.perf_counter() - start - (fisher.seconds - setup_seconds)
    check_feasible(ctx, result.w, k, label)
    stats = {**result.stats(), "k": k, **fisher.summary(), **allocation}
    log.info(
        "%s: objective %.6g (magnitude pruning: %.6g), %d blocks in %d group(s), %.2fs solving",
        label,
        result.objective,
        result.objective_magnitude,
        result.num_blocks,
        result.num_groups,
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
    stored in bfloat16/float16 (blocks are solved in float32, float64 when G is)."""

    name = "chita_block"

    def __init__(self, gradients: GradientSource, l2: float = 1e-4, block_size: int = 500):
        self.gradients = gradients
        self.l2 = check_number("l2", l2, 0)
        self.block_size = check_int("block_size", block_size, 1)

    def samples_needed(self) -> int:
        return self.gradients.samples_needed

    def label(self) -> str:
        return "CHITA (block)"

    def settings(self) -> dict:
        return {"name": self.name, "l2": self.l2, "block_size": self.block_size, "gradients": self.gradients.settings()}

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        """Frozen weights are zero in w̄, so the magnitude support skips them while k does not
        exceed the surviving weights."""
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())
        blocks = layer_blocks(ctx.pruned.shapes, self.block_size)
        compute = torch.float64 if self.gradients.dtype == "float64" else torch.float32

        def solve(
            columns: ColumnSource, groups: list[tuple[int, int]], constraint: SparsityConstraint
        ) -> BlockSolveResult:
            return block_backsolve(
                w_bar, k, blocks, columns, self.l2, groups=groups, dtype=compute, constraint=constraint
            )

        return prune_by_blocks(ctx, self.gradients, blocks, compute, solve, self.label(), k, self.l2)
