"""CHITA-CD: IHT on an active set of coordinates that grows while the objective improves."""

from __future__ import annotations

import torch
from torch import Tensor

from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .iht import Iterate, iht, initial_point, make_iterate, support_mask, threshold_step
from .problem import Problem
from .result import SolveResult, stop_reason

GROW_DOUBLINGS = 10


def _grow(
    problem: Problem, x: Iterate, in_active: Tensor, k: int, step: float, constraint: SparsityConstraint
) -> Iterate | None:
    """Try hard-thresholding steps of doubling length from x; return the best one that
    lowers f and brings in coordinates outside the active set, or None."""
    g = problem.gradient(x.w, x.r)
    best = None
    for _ in range(GROW_DOUBLINGS):
        candidate = threshold_step(problem, x, g, step, k, constraint=constraint)
        if candidate.f >= x.f:
            break
        brings_in = bool((~in_active.index_select(0, candidate.support)).any())
        if brings_in and (best is None or candidate.f < best.f):
            best = candidate
        step *= 2
    return best


def _held_at_zero(problem: Problem, in_active: Tensor) -> float:
    """What the coordinates outside the active set, held at zero, add to f: ½·ridge·‖w̄‖² − a·w̄
    over them. The restricted problem's objective plus this is the full objective."""
    w_out = problem.w_bar.masked_fill(in_active, 0)
    value = 0.5 * problem.ridge * (w_out @ w_out)
    if problem.a is not None:
        value = value - problem.a @ w_out
    return float(value)


def active_set_iht(
    problem: Problem,
    k: int,
    init: str = "backsolve",
    max_iter: int = 100,
    max_rounds: int = 10,
    expand: float = 1.5,
    tol: float = 1e-7,
    refit: bool = False,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
) -> SolveResult:
    """Run IHT restricted to an active set, then grow the set with coordinates that a full
    hard-thresholding step brings in, while that lowers the objective.

    The first active set is the allowed support of ⌊expand·k⌋ entries of `Problem.dense_start`
    (w̄, or one 1/L step from it); the first iterate is `initial_point(init)`. The objective is
    monotone across rounds because each round starts from the previous round's solution.
    Each round's full objective and residual come from the restricted solve (plus the constant
    of `_held_at_zero`), so only the growth step reads all of G.
    """
    if expand < 1:
        raise ValueError(f"expand must be >= 1, got {expand}")
    L = problem.lipschitz() if problem.a is not None else None  # only the first-order start needs it
    active = constraint.support(problem.dense_start(L), min(problem.p, max(k, int(expand * k))))
    w = initial_point(problem, k, init, L, constraint)
    active = torch.unique(torch.cat([active, torch.nonzero(w).flatten()]))
    x = make_iterate(problem, w, torch.nonzero(w).flatten())
    history = [x.f]
    iterations = 0
    converged = False
    for _ in range(max_rounds):
        in_active = support_mask(problem.p, active)
        sub = problem.restrict(active)
        sub_L = sub.lipschitz()
        sub_result = iht(
            sub,
            k,
            w0=x.w[active],
            max_iter=max_iter,
            tol=tol,
            lipschitz=sub_L,
            refit=refit,
            constraint=constraint.restrict(active),
        )
        offset = _held_at_zero(problem, in_active)
        w = torch.zeros_like(x.w).index_copy_(0, active, sub_result.w)
        residual = sub_result.residual if sub_result.residual is not None else problem.residual(w)
        x = Iterate(w, torch.nonzero(w).flatten(), residual, sub_result.objective + offset)
        history.extend(h + offset for h in sub_result.history[1:])
        iterations += sub_result.iterations
        grown = _grow(problem, x, in_active, k, 1.0 / (2.0 * sub_L), constraint)
        if grown is None:
            converged = True
            break
        newcomers = grown.support[~in_active.index_select(0, grown.support)]
        x = grown
        history.append(x.f)
        iterations += 1
        active = torch.cat([active, newcomers]).sort().values
    return SolveResult(
        w=x.w,
        objective=x.f,
        iterations=iterations,
        history=history,
        converged=converged,
        residual=x.r,
        stopped_by=stop_reason(converged),
    )
