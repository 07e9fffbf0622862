"""Dead coordinates: weights whose gradient column is (numerically) zero.

Units that never fire on the Fisher samples give their weights zero gradients. The ridge then
pins such a weight at w̄ (keeping it costs nothing in the local model), so a magnitude top-k keeps
it and no solver ever drops it, although the local model knows nothing about it. The paper's
code drops these columns before solving; `solve_live` does the same for any solver: it solves the
problem restricted to live coordinates and falls back on dead ones only when fewer than k live
ones exist.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .backsolve import fit_on_support
from .problem import Problem
from .result import SolveResult


def column_norms(G: Tensor) -> Tensor:
    """‖G[:, j]‖ for every column, read in G's own layout (one pass; no copy of G)."""
    return torch.linalg.vector_norm(G, dim=0)


def dead_columns(G: Tensor, rtol: float = 0.0) -> Tensor:
    """Boolean mask of the columns of G whose norm is at most `rtol` times the largest column norm
    (rtol = 0: exactly zero columns)."""
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    norms = column_norms(G)
    if norms.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=G.device)
    return norms <= rtol * norms.max()


def held_at_zero(problem: Problem, index: Tensor) -> float:
    """What the coordinates `index`, held at zero, add to f when a restricted problem leaves them out:
    ½·ridge·‖w̄_index‖² − a_index·w̄_index. Exact for any index set, since `Problem.restrict` keeps
    the full y = G w̄ (their columns' share of y stays in the residual)."""
    w = problem.w_bar.index_select(0, index)
    value = 0.5 * problem.ridge * (w @ w)
    if problem.a is not None:
        value = value - problem.a.index_select(0, index) @ w
    return float(value)


def dead_gain(problem: Problem, index: Tensor) -> Tensor:
    """|ridge·w̄_j − a_j|, which ranks dead coordinates by what keeping them is worth: with a zero
    column the objective decouples, and keeping j at its optimum w̄_j − a_j/ridge instead of zero
    lowers f by (ridge·w̄_j − a_j)² / (2·ridge). Chooses the dead coordinates that fill a support
    when too few live ones exist."""
    w = problem.w_bar.index_select(0, index)
    push = problem.ridge * w if problem.a is None else problem.ridge * w - problem.a.index_select(0, index)
    return push.abs()


Solver = Callable[[Problem, int], SolveResult]


def solve_live(problem: Problem, k: int, solver: Solver, rtol: float = 0.0) -> SolveResult:
    """Run `solver` on the coordinates whose gradient column is alive (see `dead_columns`) and
    return its solution in full length; dead coordinates are pruned.

    When fewer than k coordinates are alive, all live ones are kept, the support is filled with the
    dead coordinates of largest `dead_gain`, and the support is refitted exactly on the full problem.
    The objective and history are those of the full problem (the restricted one plus the constant
    of `held_at_zero`).
    """
    dead = dead_columns(problem.G, rtol)
    if not bool(dead.any()):
        return solver(problem, k)
    live = torch.nonzero(~dead).flatten()
    dead_index = torch.nonzero(dead).flatten()
    if live.numel() < k:
        fill = dead_index[torch.topk(dead_gain(problem, dead_index), k - live.numel()).indices]
        support = torch.cat([live, fill]).sort().values
        w = fit_on_support(problem, support)
        f = problem.objective(w)
        return SolveResult(w=w, objective=f, iterations=1, history=[f], converged=True)
    sub = problem.restrict(live)
    result = solver(sub, k)
    offset = held_at_zero(problem, dead_index)
    w = torch.zeros_like(problem.w_bar).index_copy_(0, live, result.w)
    return SolveResult(
        w=w,
        objective=result.objective + offset,
        iterations=result.iterations,
        history=[h + offset for h in result.history],
        converged=result.converged,
        residual=result.residual,
    )
