"""WoodFisher: the OBS baseline with the block-diagonal inverse empirical Fisher."""

from __future__ import annotations

import torch

from ..errors import check_choice, check_int, check_number
from ..fisher import GradientSource
from ..params import keep_count
from ..solver import WOODFISHER_UPDATES, BlockSolveResult, ColumnSource, SparsityConstraint, layer_blocks, woodfisher
from ..solver.dead import RULES as DEAD_RULES
from .base import PruneContext, Pruner, PruneResult
from .chita_block import prune_by_blocks


class WoodFisherPruner(Pruner):
    """One-shot WoodFisher (see `chitalab.solver.woodfisher`): OBS saliencies from the
    gradient source's G, the least salient weights pruned at once under the constraint, the
    OBS `update` applied per block of about `block_size` weights. G is held per group of
    blocks, as CHITA's block method does; blocks are computed in float64 ([F⁻¹]_qq =
    (1 − ‖L⁻¹g_q‖²)/λ cancels digits in float32). Dead coordinates (`dead_columns`,
    `dead_rtol`) are pruned first, as in `ChitaPruner`."""

    name = "woodfisher"

    def __init__(
        self,
        gradients: GradientSource,
        l2: float = 1e-4,
        block_size: int = 2000,
        update: str = "independent",
        dead_columns: str = "drop",
        dead_rtol: float = 0.0,
    ):
        self.gradients = gradients
        self.l2 = check_number("l2", l2, 0, inclusive=False, rule="> 0 (WoodFisher inverts F + l2·I)")
        self.block_size = check_int("block_size", block_size, 1)
        self.update = check_choice("update", update, WOODFISHER_UPDATES)
        self.dead_columns = check_choice("dead_columns", dead_columns, DEAD_RULES)
        self.dead_rtol = check_number("dead_rtol", dead_rtol, 0)

    def samples_needed(self) -> int:
        return self.gradients.samples_needed

    def label(self) -> str:
        return "WoodFisher"

    def settings(self) -> dict:
        return {
            "name": self.name,
            "l2": self.l2,
            "block_size": self.block_size,
            "update": self.update,
            "dead_columns": self.dead_columns,
            "dead_rtol": self.dead_rtol,
            "gradients": self.gradients.settings(),
        }

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())
        blocks = layer_blocks(ctx.pruned.shapes, self.block_size)

        def solve(
            columns: ColumnSource, groups: list[tuple[int, int]], constraint: SparsityConstraint
        ) -> list[BlockSolveResult]:
            return [
                woodfisher(
                    w_bar,
                    k,
                    blocks,
                    columns,
                    self.l2,
                    self.update,
                    groups=groups,
                    frozen=ctx.frozen,
                    dtype=torch.float64,
                    constraint=constraint,
                    dead_rtol=self.dead_rtol if self.dead_columns == "drop" else None,
                )
            ]

        return prune_by_blocks(ctx, self.gradients, blocks, torch.float64, solve, self.label(), k, [self.l2])
