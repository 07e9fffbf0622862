"""WoodFisher (Singh & Alistarh, NeurIPS 2020): Optimal Brain Surgeon with the inverse
empirical Fisher, the baseline the CHITA paper compares with.

The Fisher F = GᵀG/n + λI is taken block-diagonal (blocks from `layer_blocks`). Weight q
gets the OBS saliency ρ_q = w_q² / (2 [F⁻¹]_qq); the p − k least salient weights across all
blocks are pruned at once (the paper's one-shot "all at once" variant) and the survivors
are moved by the OBS update of their block:

* "joint": the exact multi-weight update δw = −F⁻¹E_Q (E_QᵀF⁻¹E_Q)⁻¹ E_Qᵀw, i.e. the minimiser
  of (w − w̄)ᵀF(w − w̄) with the pruned set Q at zero (computed as that ridge fit);
* "independent": the sum of single-weight updates −Σ_q (w_q / [F⁻¹]_qq) F⁻¹e_q, pruned weights
  then set to zero (what the WoodFisher code applies when it prunes many weights at once);
* "none": the kept weights stay as they are (saliency-only pruning).

F⁻¹ is never formed when a block has more weights than there are gradients: by Woodbury
(the closed form of WoodFisher's n Sherman-Morrison rank-one updates),
F⁻¹ = (I − G_bᵀ(nλI + G_bG_bᵀ)⁻¹G_b)/λ, so only an n x n matrix is factorised. As
(n/2)(w − w̄)ᵀF(w − w̄) is CHITA's objective with ridge nλ, λ is the `l2` CHITA uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .backsolve import fit_on_support
from .block import BlockSolveResult, ColumnSource, group_passes, one_thread
from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .dead import column_norms, dead_by_norm, live_support
from .problem import Problem

UPDATES = ("joint", "independent", "none")


class BlockInverseFisher:
    """F_b⁻¹ for one block, F_b = G_bᵀG_b/n + λI, from one Cholesky factor: of F_b itself when
    the block has at most n weights, else of the n x n Woodbury matrix nλI + G_bG_bᵀ."""

    def __init__(self, G: Tensor, l2: float):
        if not l2 > 0:
            raise ValueError(f"WoodFisher needs a positive dampening l2 (F + l2·I must be invertible), got {l2}")
        self.G, self.l2 = G, l2
        n, size = G.shape
        self.woodbury = size > n
        if self.woodbury:
            inner = G @ G.T
            inner.diagonal().add_(n * l2)
        else:
            inner = G.T @ G / n
            inner.diagonal().add_(l2)
        self.factor = torch.linalg.cholesky(inner)

    def diagonal(self) -> Tensor:
        """[F_b⁻¹]_qq for every q in the block."""
        if self.woodbury:
            Z = torch.linalg.solve_triangular(self.factor, self.G, upper=False)
            return (1 - Z.square().sum(dim=0)) / self.l2
        return torch.cholesky_inverse(self.factor).diagonal()

    def apply(self, v: Tensor) -> Tensor:
        """F_b⁻¹ v."""
        if self.woodbury:
            inner = torch.cholesky_solve((self.G @ v).unsqueeze(-1), self.factor).squeeze(-1)
            return (v - self.G.T @ inner) / self.l2
        return torch.cholesky_solve(v.unsqueeze(-1), self.factor).squeeze(-1)


def obs_update(
    G: Tensor, w_bar: Tensor, keep: Tensor, l2: float, update: str, inverse_diagonal: Tensor | None = None
) -> Tensor:
    """The block's weights after pruning the coordinates where `keep` is false; `inverse_diagonal`
    ([F⁻¹]_qq, when already known) spares the independent update recomputing it."""
    if update == "none" or not keep.any():
        return w_bar * keep
    if update == "joint":
        problem = Problem.from_gradients(G, w_bar, l2)
        return fit_on_support(problem, torch.nonzero(keep).flatten())
    if update == "independent":
        inverse = BlockInverseFisher(G, l2)
        diagonal = inverse.diagonal() if inverse_diagonal is None else inverse_diagonal
        scale = torch.where(keep, 0.0, w_bar / diagonal)
        return (w_bar - inverse.apply(scale)) * keep
    raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")


def _group_inverse_diagonals(G: Tensor, offset: int, blocks: Sequence[tuple[int, int]], l2: float, out: Tensor) -> None:
    """[F_b⁻¹]_qq of every weight in `blocks` (G's columns start at `offset`)."""
    for b0, b1 in blocks:
        out[b0:b1] = BlockInverseFisher(G[:, b0 - offset : b1 - offset].to(out.dtype), l2).diagonal()


def _group_updates(
    G: Tensor,
    offset: int,
    blocks: Sequence[tuple[int, int]],
    w_bar: Tensor,
    keep: Tensor,
    l2: float,
    update: str,
    inverse_diagonal: Tensor,
    w: Tensor,
) -> tuple[float, float]:
    """Apply the OBS update in `blocks` into w; returns the sums of their objectives after it and
    with w̄ merely masked."""
    objective = objective_magnitude = 0.0
    for b0, b1 in blocks:
        G_b = G[:, b0 - offset : b1 - offset].to(w.dtype)
        w[b0:b1] = obs_update(G_b, w_bar[b0:b1], keep[b0:b1], l2, update, inverse_diagonal[b0:b1])
        problem = Problem.from_gradients(G_b, w_bar[b0:b1], l2)
        objective += problem.objective(w[b0:b1])
        objective_magnitude += problem.objective(w_bar[b0:b1] * keep[b0:b1])
    return objective, objective_magnitude


def woodfisher(
    w_bar: Tensor,
    k: int,
    blocks: Sequence[tuple[int, int]],
    gradients: Tensor | ColumnSource,
    l2: float,
    update: str = "joint",
    groups: Sequence[tuple[int, int]] | None = None,
    frozen: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
    dead_rtol: float | None = None,
) -> BlockSolveResult:
    """Keep the k most salient weights (see the module doc) and apply the OBS `update`.

    `gradients` is G (n x p) or a callable giving its columns [start, stop), fetched per group
    in `groups` (whole blocks; one group by default): once when G is given whole or there is
    one group, else twice (saliencies, then updates). `frozen` weights are pruned first. With
    `dead_rtol` (see `chitalab.solver.dead`), weights whose gradient column is dead are pruned
    unless fewer than k live ones exist (their saliency λw²/2 is already small, but not always
    the smallest).
    Blocks are computed in `dtype`: the diagonal 1 − ‖L⁻¹g_q‖² loses digits in float32 when λ
    is small. The objectives are those of the block-diagonal model.
    """
    if update not in UPDATES:
        raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
    p = w_bar.numel()
    groups = list(groups) if groups is not None else [(0, p)]
    first, second = group_passes(gradients, groups, blocks, twice=True)
    w_ref = w_bar.to(dtype)
    inverse_diagonal = torch.empty(p, dtype=dtype, device=w_bar.device)
    norms = None if dead_rtol is None else torch.empty(p, dtype=dtype, device=w_bar.device)
    with one_thread(w_bar.device):
        for G, offset, group in first:
            _group_inverse_diagonals(G, offset, group, l2, inverse_diagonal)
            if norms is not None:  # the dead columns' norms, in the same pass
                norms[offset : offset + G.shape[1]] = column_norms(G)
            del G  # free this group's columns before the next group's are computed
    # ρ_q = w_q² / (2 [F⁻¹]_qq). Round-off can push a tiny positive [F⁻¹]_qq to zero or below:
    # such a weight is kept. The constraint keeps the allowed support of largest saliency.
    saliency = w_ref.square() / (2 * inverse_diagonal.clamp_min(torch.finfo(dtype).tiny))
    if frozen is not None:
        saliency.masked_fill_(frozen.to(saliency.device), 0)
    dead = None if norms is None or dead_rtol is None else dead_by_norm(norms, dead_rtol)
    keep, left_out = (
        live_support(constraint, saliency, min(k, p), dead) if k > 0 else (torch.zeros(p, dtype=torch.bool), 0)
    )
    keep = keep.to(w_bar.device)
    if frozen is not None:  # pruned even when k exceeds the other weights
        keep &= ~frozen.to(keep.device)
    w = torch.zeros(p, dtype=dtype, device=w_bar.device)
    objective = objective_magnitude = 0.0
    with one_thread(w_bar.device):
        for G, offset, group in second():
            f, f_magnitude = _group_updates(G, offset, group, w_ref, keep, l2, update, inverse_diagonal, w)
            del G
            objective += f
            objective_magnitude += f_magnitude
    return BlockSolveResult.exact(w, objective, objective_magnitude, len(blocks), len(groups), left_out)
