"""WoodFisher: the OBS baseline with the block-diagonal inverse empirical Fisher."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError, choice_error
from ..solver import WOODFISHER_UPDATES, BlockSolveResult, woodfisher
from ..solver.block import ColumnSource
from .base import PruneContext, PruneResult
from .chita import ChitaPruner


class WoodFisherPruner(ChitaPruner):
    """One-shot WoodFisher (see `chitalab.solver.woodfisher`): global OBS saliencies from the
    same gradients CHITA uses, the p − k least salient weights pruned at once, the OBS `update`
    applied per block. Gradients are collected and held as CHITA's block method does (per
    group of blocks within `max_memory_gb`)."""

    name = "woodfisher"
    _block_label = "WoodFisher"

    def __init__(
        self,
        n_samples: int = 1000,
        fisher_mini_bsz: int = 1,
        l2: float = 1e-4,
        block_size: int = 2000,
        update: str = "independent",
        fisher_dtype: str = "float32",
        fisher_chunk_size: int = 64,
        max_memory_gb: float | None = None,
    ):
        if update not in WOODFISHER_UPDATES:
            raise choice_error("pruner.update", update, WOODFISHER_UPDATES)
        if not l2 > 0:
            raise UserError(f"pruner.l2={l2!r} is not allowed; WoodFisher inverts F + l2·I, so it must be > 0")
        super().__init__(
            method="block",
            n_samples=n_samples,
            fisher_mini_bsz=fisher_mini_bsz,
            l2=l2,
            block_size=block_size,
            fisher_dtype=fisher_dtype,
            fisher_chunk_size=fisher_chunk_size,
            max_memory_gb=max_memory_gb,
        )
        self.update = update

    def settings(self) -> dict:
        keys = (
            "n_samples",
            "fisher_mini_bsz",
            "l2",
            "block_size",
            "update",
            "fisher_dtype",
            "fisher_chunk_size",
            "max_memory_gb",
        )
        return {"name": self.name, **{key: getattr(self, key) for key in keys}}

    def samples_needed(self) -> int:
        return self.n_samples * self.fisher_mini_bsz

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        return self._prune_blocks(ctx, sparsity)

    def _block_compute_dtype(self) -> torch.dtype:
        return torch.float64  # [F⁻¹]_qq = (1 − ‖L⁻¹g_q‖²)/λ cancels digits in float32

    def _block_solve(
        self,
        w_bar: Tensor,
        k: int,
        blocks: list[tuple[int, int]],
        columns: ColumnSource,
        groups: list[tuple[int, int]],
        dtype: torch.dtype,
        frozen: Tensor | None,
    ) -> BlockSolveResult:
        return woodfisher(w_bar, k, blocks, columns, self.l2, self.update, groups=groups, frozen=frozen, dtype=dtype)
