"""CHITA-BSO: the exact ridge solution on a fixed support."""

from __future__ import annotations

import torch
from torch import Tensor

from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .problem import Problem
from .result import SolveResult


def _spd_solve(A: Tensor, B: Tensor) -> Tensor:
    """Solve A X = B (B a vector or a matrix of columns) for symmetric positive (semi)definite A;
    Cholesky first, LU if that fails."""
    vector = B.ndim == 1
    B = B.unsqueeze(-1) if vector else B
    L, info = torch.linalg.cholesky_ex(A)
    X = torch.cholesky_solve(B, L) if int(info) == 0 else torch.linalg.solve(A, B)
    return X.squeeze(-1) if vector else X


def ridge_on_support(problem: Problem, support: Tensor, method: str = "auto") -> Tensor:
    """Minimise f over w with w = 0 outside `support`; returns the values on the support.

    Solved for the move d = x − w̄_S away from the dense weights:
    (G_SᵀG_S + ridge·I) d = G_Sᵀr₀ − a_S, with r₀ = y − G_S w̄_S what the pruned weights
    contributed to y. With n < |S| (or method="woodbury") only n x n systems are solved: the
    push-through identity (G_SᵀG_S + ridge·I)⁻¹G_Sᵀ = G_Sᵀ(G_S G_Sᵀ + ridge·I)⁻¹ for the first
    term and the Woodbury identity for a_S. Unlike Woodbury applied to the whole right-hand side,
    nothing large is divided by a small ridge, so float32 stays accurate.
    """
    if method not in ("auto", "woodbury", "direct"):
        raise ValueError(f"method must be auto, woodbury or direct, got {method!r}")
    G_S = problem.columns(support)
    w_S = problem.w_bar.index_select(0, support)
    a_S = None if problem.a is None else problem.a.index_select(0, support)
    r0 = problem.y - G_S @ w_S
    n, s = G_S.shape
    use_woodbury = method == "woodbury" or (method == "auto" and n < s)
    if not use_woodbury:
        gram = G_S.T @ G_S
        gram.diagonal().add_(problem.ridge)
        rhs = G_S.T @ r0 if a_S is None else G_S.T @ r0 - a_S
        return w_S + _spd_solve(gram, rhs)
    if problem.ridge <= 0:
        raise ValueError(
            f"backsolve on {s} weights from {n} gradients needs a positive ridge l2 "
            "(the system is singular when l2 = 0 and n < k)"
        )
    inner = G_S @ G_S.T
    inner.diagonal().add_(problem.ridge)
    if a_S is None:
        return w_S + G_S.T @ _spd_solve(inner, r0)
    z = _spd_solve(inner, torch.stack([r0, G_S @ a_S], dim=1))
    return w_S + G_S.T @ z[:, 0] - (a_S - G_S.T @ z[:, 1]) / problem.ridge


def fit_on_support(problem: Problem, support: Tensor, method: str = "auto") -> Tensor:
    """The full-length vector that is the exact ridge solution on `support`, zero elsewhere."""
    w = torch.zeros_like(problem.w_bar)
    w[support] = ridge_on_support(problem, support, method)
    return w


def initial_support(
    problem: Problem, k: int, lipschitz: float | None = None, constraint: SparsityConstraint = GLOBAL_TOP_K
) -> Tensor:
    """The allowed support of w̄ (top-k by default), after one 1/L gradient step when the
    first-order term moves w̄."""
    return constraint.support(problem.dense_start(lipschitz), k)


def backsolve(
    problem: Problem, k: int, method: str = "auto", constraint: SparsityConstraint = GLOBAL_TOP_K
) -> SolveResult:
    """CHITA-BSO: magnitude support (see `initial_support`), then the exact ridge fit on it."""
    support = initial_support(problem, k, constraint=constraint)
    w = fit_on_support(problem, support, method)
    f = problem.objective(w)
    return SolveResult(w=w, objective=f, iterations=1, history=[f], converged=True)
