"""The refitted per-layer loss: the pruner's local model of pruning one layer, kept weights refitted.

What `PerLayer(mode="allocated")` minimises over its density grid (OBC's per-layer errors). For
a layer l and a support S of it, the CHITA objective after the exact ridge fit of the kept
weights, every other weight at w̄ (the first-order term left out):

    f_l(S) = min { ½‖G(w̄ − w)‖² + (ρ/2)‖w − w̄‖² : w = 0 on l off S, w = w̄ outside l },  ρ = n·λ,

with GᵀG taken block-diagonal as the pruner takes it: f_l is the sum over the layer's blocks
(`layer_blocks` for the block pruners; the whole layer for the pruners that hold G whole) of
each block's own fit, which is exactly what the block backsolve reaches on that support.

The supports of one layer along the grid are nested (its largest |w̄| at each density, the
support backsolve uses), so each block is factorised once for the whole grid. With δ = w̄ − w,
H = G_bᵀG_b + ρI ordered by when each weight enters the support, and L its Cholesky factor,
the fit on the first m weights leaves

    f_b = ½ uᵀ(H / H_SS) u = ½‖L₂₂ᵀu‖² = ½‖(Lᵀw̄)[m:]‖²,   u = w̄[m:], L₂₂ = L[m:, m:]

(the Schur complement of the kept block is L₂₂L₂₂ᵀ, and as Lᵀ is upper triangular its rows
past m only see u): one O(n·s² + s³/3) factorisation and one triangular product give f_b at
every m, so the grid may be as fine as one likes. A block of more weights than samples
(s > n, with a positive ridge) uses the n x n form instead, f_b = (ρ/2)(rᵀ(K_S + ρI)⁻¹r + ‖u‖²)
with K_S = G_S G_Sᵀ grown from one density to the next and r = G_{S^c} u the pruned weights'
share of y: O(n²·s) in all and one n x n Cholesky per distinct support. Everything is
computed in float64.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch import Tensor

from .backsolve import _spd_solve
from .block import ColumnSource, group_columns, one_thread
from .constraint import LayerLoss

F64 = torch.float64
JITTER_TRIES = 8


def _cholesky(H: Tensor) -> Tensor:
    """Cholesky factor of the symmetric positive semidefinite H; when it is singular (a zero
    ridge), of H plus the smallest of 1e-12, 1e-10, ... times its mean diagonal that works."""
    L, info = torch.linalg.cholesky_ex(H)
    scale = float(H.diagonal().mean()) if H.numel() else 0.0
    for t in range(JITTER_TRIES):
        if int(info) == 0:
            return L
        L, info = torch.linalg.cholesky_ex(
            H + (10.0 ** (2 * t - 12)) * max(scale, 1e-300) * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        )
    raise ValueError("the block's Gram matrix could not be factorised")


def nested_fit_losses(G: Tensor, w: Tensor, ridge: float, counts: Sequence[int]) -> Tensor:
    """The refitted objective of one block at nested supports: the j-th keeps its first
    counts[j] weights (G's columns and w in that order; counts nondecreasing). Returns
    len(counts) float64 values (see the module for the two forms)."""
    G, w = G.to(F64), w.to(F64)
    n, s = G.shape
    out = torch.zeros(len(counts), dtype=F64)
    if s <= n or ridge <= 0:
        H = G.T @ G
        H.diagonal().add_(ridge)
        z = _cholesky(H).T @ w  # (Lᵀw)[m:] = L₂₂ᵀu: f at m kept is ½‖z[m:]‖², for every m at once
        tails = torch.cat([z.square().flip(0).cumsum(0).flip(0), z.new_zeros(1)])
        return 0.5 * tails[torch.tensor(list(counts), dtype=torch.long, device=z.device)].cpu()
    K = torch.zeros(n, n, dtype=F64, device=G.device)
    previous = 0
    for j, m in enumerate(counts):
        if m >= s:
            continue  # all kept: nothing pruned, f = 0
        if j and m == counts[j - 1]:
            out[j] = out[j - 1]
            continue
        if m > previous:
            grown = G[:, previous:m]
            K.addmm_(grown, grown.T)
            previous = m
        r = G[:, m:] @ w[m:]
        shifted = K.clone()
        shifted.diagonal().add_(ridge)
        out[j] = 0.5 * ridge * float(r @ _spd_solve(shifted, r) + w[m:] @ w[m:])
    return out


def layer_loss(
    gradients: Tensor | ColumnSource,
    l2: float,
    blocks: Sequence[tuple[int, int]] | None = None,
    groups: Sequence[tuple[int, int]] | None = None,
) -> LayerLoss:
    """The refitted per-layer loss (see the module) as a `LayerLoss`, from G (n x p) or a column
    source giving G's columns [start, stop).

    `blocks`: the pruner's blocks (`layer_blocks`), each inside one layer; None: every layer is
    one block (the pruners that hold G whole). `groups`: consecutive column ranges of whole
    blocks, G read one group at a time (the Fisher plan's groups); None: one group, all of G.
    The ridge is n·l2, as in `Problem.from_gradients`."""
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")

    def loss(w_bar: Tensor, layers: Sequence[tuple[int, int]], entry: Tensor, levels: int) -> Tensor:
        units = list(layers) if blocks is None else list(blocks)
        starts = [start for start, _ in layers]
        out = torch.zeros(len(layers), levels, dtype=F64)
        steps = torch.arange(levels, device=entry.device)
        for G, offset, group in group_columns(gradients, groups or [(0, w_bar.numel())], units):
            ridge = G.shape[0] * float(l2)
            with one_thread(G.device):
                for b0, b1 in group:
                    layer = bisect_right(starts, b0) - 1
                    if layer < 0 or b1 > layers[layer][1]:
                        raise ValueError(f"block ({b0}, {b1}) is not inside one layer")
                    order = torch.argsort(entry[b0:b1], stable=True)
                    counts = torch.searchsorted(entry[b0:b1][order], steps, right=True).tolist()
                    columns = G[:, b0 - offset : b1 - offset].index_select(1, order.to(G.device))
                    weights = w_bar[b0:b1].to(G.device)[order.to(G.device)]
                    out[layer] += nested_fit_losses(columns, weights, ridge, counts).cpu()
            del G  # free this group's columns before the next group's are read
        return out

    return loss
