"""CHITA-BSO: the exact ridge solution on a fixed support."""

from __future__ import annotations

import torch
from torch import Tensor

from .problem import Problem, hard_threshold
from .result import SolveResult


def _spd_solve(A: Tensor, b: Tensor) -> Tensor:
    """Solve A x = b for symmetric positive (semi)definite A; Cholesky first, LU if that fails."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
    return torch.linalg.solve(A, b)


def ridge_on_support(problem: Problem, support: Tensor, method: str = "auto") -> Tensor:
    """Minimise f over w with w = 0 outside `support`; returns the values on the support.

    Solves (G_SᵀG_S + ridge·I) x = G_Sᵀy + ridge·w̄_S − a_S. With n < |S| (or
    method="woodbury") only an n x n system is solved:
    x = b/ridge − G_Sᵀ(ridge·I + G_S G_Sᵀ)⁻¹G_S b/ridge.
    """
    if method not in ("auto", "woodbury", "direct"):
        raise ValueError(f"method must be auto, woodbury or direct, got {method!r}")
    G_S = problem.G.index_select(1, support)
    b = G_S.T @ problem.y
    if problem.ridge > 0:
        b = b + problem.ridge * problem.w_bar.index_select(0, support)
    if problem.a is not None:
        b = b - problem.a.index_select(0, support)
    n, s = G_S.shape
    use_woodbury = method == "woodbury" or (method == "auto" and n < s)
    if use_woodbury:
        if problem.ridge <= 0:
            raise ValueError(
                f"backsolve on {s} weights from {n} gradients needs a positive ridge l2 "
                "(the system is singular when l2 = 0 and n < k)"
            )
        inner = G_S @ G_S.T
        inner.diagonal().add_(problem.ridge)
        return (b - G_S.T @ _spd_solve(inner, G_S @ b)) / problem.ridge
    gram = G_S.T @ G_S
    gram.diagonal().add_(problem.ridge)
    return _spd_solve(gram, b)


def fit_on_support(problem: Problem, support: Tensor, method: str = "auto") -> Tensor:
    """The full-length vector that is the exact ridge solution on `support`, zero elsewhere."""
    w = torch.zeros_like(problem.w_bar)
    w[support] = ridge_on_support(problem, support, method)
    return w


def initial_support(problem: Problem, k: int) -> Tensor:
    """Top-k support of w̄, after one 1/L gradient step when the first-order term moves w̄."""
    return hard_threshold(problem.dense_start(), k)[1]


def backsolve(problem: Problem, k: int, method: str = "auto") -> SolveResult:
    """CHITA-BSO: magnitude support (see `initial_support`), then the exact ridge fit on it."""
    support = initial_support(problem, k)
    w = fit_on_support(problem, support, method)
    f = problem.objective(w)
    return SolveResult(w=w, objective=f, iterations=1, history=[f], converged=True)
