"""The exact ridge fit on a fixed support for a grid of ridges, from one eigendecomposition.

The best ridge differs by sparsity, so a pruner picks l2 on held-out training samples; the fits it
compares all solve (G_SᵀG_S + nλI) d = G_Sᵀr₀ − a_S on the same G_S. With the eigendecomposition of
the smaller Gram matrix (G_S G_Sᵀ, n x n, when n < |S|; else G_SᵀG_S) every λ costs O(n·|S|)
instead of a new O(n²|S| + n³) factorisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .problem import Problem

F64 = torch.float64


def ridge_path(problem: Problem, support: Tensor, l2s: Sequence[float]) -> Tensor:
    """Values on `support` of the exact fit for each λ in `l2s` (ridge = n·λ, as in
    `Problem.from_gradients`; the problem's own ridge is not used): a len(l2s) x |S| tensor in the
    problem's dtype, row t equal to `ridge_on_support` of the problem with l2 = l2s[t].

    Computed in float64. Each λ must be > 0 when n < |S| or the first-order term is present
    (the system is singular otherwise).
    """
    G_S = problem.columns(support).to(F64)
    w_S = problem.w_bar.index_select(0, support).to(F64)
    a_S = None if problem.a is None else problem.a.index_select(0, support).to(F64)
    r0 = problem.y.to(F64) - G_S @ w_S
    n, s = G_S.shape
    ridges = torch.tensor([n * float(l2) for l2 in l2s], dtype=F64, device=G_S.device)
    if bool((ridges < 0).any()):
        raise ValueError(f"l2 values must be >= 0, got {list(l2s)}")
    if (n < s or a_S is not None) and bool((ridges <= 0).any()):
        raise ValueError("ridge_path needs every l2 > 0 when n < |S| or with a first-order term")
    if n < s:
        eigenvalues, Q = torch.linalg.eigh(G_S @ G_S.T)
        scale = 1.0 / (eigenvalues.clamp_min(0)[None, :] + ridges[:, None])  # (m, n)
        moves = ((Q.T @ r0)[None, :] * scale) @ Q.T @ G_S  # G_Sᵀ(K + ρI)⁻¹ r₀ for every ρ, as rows
        if a_S is not None:
            inner = ((Q.T @ (G_S @ a_S))[None, :] * scale) @ Q.T @ G_S
            moves = moves - (a_S[None, :] - inner) / ridges[:, None]
    else:
        eigenvalues, V = torch.linalg.eigh(G_S.T @ G_S)
        scale = 1.0 / (eigenvalues.clamp_min(0)[None, :] + ridges[:, None])  # (m, s)
        rhs = G_S.T @ r0 if a_S is None else G_S.T @ r0 - a_S
        moves = ((V.T @ rhs)[None, :] * scale) @ V.T
    return (w_S[None, :] + moves).to(problem.w_bar.dtype)


def fit_path(problem: Problem, support: Tensor, l2s: Sequence[float]) -> list[Tensor]:
    """Full-length fits (zero off `support`), one per λ in `l2s` (see `ridge_path`)."""
    values = ridge_path(problem, support, l2s)
    return [torch.zeros_like(problem.w_bar).index_copy_(0, support, row) for row in values]


def with_l2(problem: Problem, l2: float) -> Problem:
    """The same problem under another ridge λ (G, y and a shared, not copied)."""
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    return Problem(G=problem.G, w_bar=problem.w_bar, y=problem.y, ridge=problem.n * float(l2), a=problem.a)
