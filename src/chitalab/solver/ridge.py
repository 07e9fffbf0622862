"""The exact ridge fit on a fixed support for a grid of ridges, sharing the Gram matrix.

The best ridge differs by sparsity, so a pruner picks l2 on held-out training samples; the fits it
compares all solve (G_SᵀG_S + nλI) d = G_Sᵀr₀ − a_S on the same G_S. The Gram matrix of the smaller
side (G_S G_Sᵀ, n x n, when n < |S|; else G_SᵀG_S) costs O(n²|S|) and is formed once; each λ then
needs one Cholesky factorisation of it plus λI (or, after one eigendecomposition, O(n·|S|)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .backsolve import _spd_solve
from .problem import Problem

F64 = torch.float64


METHODS = ("cholesky", "eigh")


def ridge_path(problem: Problem, support: Tensor, l2s: Sequence[float], method: str = "cholesky") -> Tensor:
    """Values on `support` of the exact fit for each λ in `l2s` (ridge = n·λ, as in
    `Problem.from_gradients`; the problem's own ridge is not used): a len(l2s) x |S| tensor in the
    problem's dtype, row t equal to `ridge_on_support` of the problem with l2 = l2s[t].

    The Gram matrix of the smaller side (G_S G_Sᵀ, n x n, when n < |S|; else G_SᵀG_S), the
    O(n²|S|) part, is formed once. method="cholesky" then factorises Gram + ridge·I once per λ
    (O(n³/3) each); method="eigh" eigendecomposes the Gram once, after which every λ costs
    O(n·|S|), which pays for long grids where the eigensolver is fast (torch's CPU eigh is much
    slower than a Cholesky on some builds). Computed in float64. Each λ must be > 0 when n < |S| or
    the first-order term is present (the system is singular otherwise).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    G_S = problem.columns(support).to(F64)
    w_S = problem.w_bar.index_select(0, support).to(F64)
    a_S = None if problem.a is None else problem.a.index_select(0, support).to(F64)
    r0 = problem.y.to(F64) - G_S @ w_S
    n, s = G_S.shape
    ridges = [n * float(l2) for l2 in l2s]
    if any(rho < 0 for rho in ridges):
        raise ValueError(f"l2 values must be >= 0, got {list(l2s)}")
    if (n < s or a_S is not None) and any(rho <= 0 for rho in ridges):
        raise ValueError("ridge_path needs every l2 > 0 when n < |S| or with a first-order term")
    wide = n < s
    gram = G_S @ G_S.T if wide else G_S.T @ G_S
    if wide:  # d = G_Sᵀ(K + ρI)⁻¹r₀ − (a_S − G_Sᵀ(K + ρI)⁻¹G_S a_S)/ρ  (as in ridge_on_support)
        rhs = r0[:, None] if a_S is None else torch.stack([r0, G_S @ a_S], dim=1)
    else:  # (C + ρI) d = G_Sᵀr₀ − a_S
        rhs = (G_S.T @ r0 if a_S is None else G_S.T @ r0 - a_S)[:, None]
    if method == "eigh":
        eigenvalues, Q = torch.linalg.eigh(gram)
        projected = Q.T @ rhs
    moves = []
    for rho in ridges:
        if method == "eigh":
            z = Q @ (projected / (eigenvalues.clamp_min(0)[:, None] + rho))
        else:
            shifted = gram.clone()
            shifted.diagonal().add_(rho)
            z = _spd_solve(shifted, rhs)
        if not wide:
            moves.append(z[:, 0])
        elif a_S is None:
            moves.append(G_S.T @ z[:, 0])
        else:
            moves.append(G_S.T @ z[:, 0] - (a_S - G_S.T @ z[:, 1]) / rho)
    return (w_S[None, :] + torch.stack(moves)).to(problem.w_bar.dtype)


def fit_path(problem: Problem, support: Tensor, l2s: Sequence[float]) -> list[Tensor]:
    """Full-length fits (zero off `support`), one per λ in `l2s` (see `ridge_path`)."""
    values = ridge_path(problem, support, l2s)
    return [torch.zeros_like(problem.w_bar).index_copy_(0, support, row) for row in values]


def with_l2(problem: Problem, l2: float) -> Problem:
    """The same problem under another ridge λ (G, y and a shared, not copied)."""
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    return Problem(G=problem.G, w_bar=problem.w_bar, y=problem.y, ridge=problem.n * float(l2), a=problem.a)
