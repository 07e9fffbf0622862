"""Iterative hard thresholding with the paper's step-size scheme."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support, initial_support
from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .problem import Problem
from .result import SolveResult, stop_reason

STEP_RULES = ("exact", "lipschitz")
INITS = ("backsolve", "magnitude")
LINE_SEARCH_DOUBLINGS = 10


@dataclass
class Iterate:
    """A k-sparse point with its support, residual and objective."""

    w: Tensor
    support: Tensor
    r: Tensor
    f: float


def make_iterate(problem: Problem, w: Tensor, support: Tensor) -> Iterate:
    r = problem.residual(w, support)
    return Iterate(w, support, r, problem.objective(w, r))


def support_mask(p: int, support: Tensor) -> Tensor:
    """Boolean vector of length p, true on `support`."""
    mask = torch.zeros(p, dtype=torch.bool, device=support.device)
    mask[support] = True
    return mask


def threshold_step(
    problem: Problem,
    x: Iterate,
    g: Tensor,
    eta: float,
    k: int,
    in_support: Tensor | None = None,
    Gg: Tensor | None = None,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
) -> Iterate:
    """H_k(w − η∇f): a gradient step, then the projection onto `constraint` (by default the k
    largest magnitudes).

    With Gg = G·(∇f on x's support, zero elsewhere) and `in_support` (the mask of x's support,
    see `support_mask`), the residual is updated instead of recomputed:
    r(η) = r + η·Gg + G_D·c, where D holds the coordinates that leave or enter the support and
    c their values in w − η∇f (negated for those entering). A step that swaps few coordinates
    then reads |D| columns of G, not all p.
    """
    v = x.w - eta * g
    mask = constraint.support_mask(v, k)
    w, support = v.masked_fill(~mask, 0), torch.nonzero(mask).flatten()
    if Gg is None or in_support is None:
        return make_iterate(problem, w, support)
    changed = torch.nonzero(in_support ^ mask).flatten()
    if not problem.few_columns(changed.numel()):
        return make_iterate(problem, w, support)
    v_changed = v.index_select(0, changed)
    c = torch.where(in_support.index_select(0, changed), v_changed, -v_changed)
    r = torch.addmv(torch.add(x.r, Gg, alpha=eta), problem.columns(changed), c)
    return Iterate(w, support, r, problem.objective(w, r))


def _exact_step(
    problem: Problem,
    x: Iterate,
    g: Tensor,
    k: int,
    inv_lipschitz: float,
    stall_tol: float,
    refit: bool,
    constraint: SparsityConstraint,
) -> Iterate:
    """The paper's step: the exact minimiser along −∇f on the support when the support stays
    and the step makes progress; otherwise (the support would change, or the iterate sits at
    the optimum of its support) a short doubling line search from just below the
    support-changing step (which the constraint computes), compared with the safe 1/L step.
    Returns x itself when no candidate lowers f.

    G·g_S is computed once and shared: the exact step's curvature and residual use it, and so
    do the residual updates of every line-search candidate (see `threshold_step`).
    """
    in_support = support_mask(problem.p, x.support)
    g_S = g.index_select(0, x.support)
    w_S = x.w.index_select(0, x.support)
    eta_change = constraint.change_step(x.w, g, in_support, k)
    best = x
    Gg = problem.columns_times(x.support, g_S)
    g_norm2 = float(g_S @ g_S)
    curvature = float(Gg @ Gg) + problem.ridge * g_norm2
    eta_opt = g_norm2 / curvature if curvature > 0 else float("inf")
    if eta_opt < eta_change:
        w = x.w.index_put((x.support,), w_S - eta_opt * g_S)
        r = torch.add(x.r, Gg, alpha=eta_opt)
        exact = Iterate(w, x.support, r, problem.objective(w, r))
        if x.f - exact.f > stall_tol * max(abs(x.f), 1.0):
            return exact
        best = exact if exact.f < best.f else best
    # Progress needs a new support: try the safe 1/L step and steps from just below the
    # support-changing one, doubled up to LINE_SEARCH_DOUBLINGS times while that lowers f
    # (once a doubling raises f, longer steps are not tried); keep the best.
    candidate = threshold_step(problem, x, g, inv_lipschitz, k, in_support, Gg, constraint)
    best = candidate if candidate.f < best.f else best
    eta, previous = eta_change * (1 - 1e-4), float("inf")
    for _ in range(LINE_SEARCH_DOUBLINGS):
        if not 0 < eta < float("inf"):
            break
        candidate = threshold_step(problem, x, g, eta, k, in_support, Gg, constraint)
        if refit:
            candidate = make_iterate(problem, fit_on_support(problem, candidate.support), candidate.support)
        best = candidate if candidate.f < best.f else best
        if candidate.f >= previous:
            break
        previous = candidate.f
        eta *= 2
    return best


def initial_point(
    problem: Problem,
    k: int,
    init: str,
    lipschitz: float | None = None,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
) -> Tensor:
    """The k-sparse start: the allowed support of `Problem.dense_start` with its exact ridge fit
    ("backsolve", so no solver ends worse than CHITA-BSO) or with w̄'s values ("magnitude")."""
    if init == "backsolve":
        return fit_on_support(problem, initial_support(problem, k, lipschitz, constraint))
    if init == "magnitude":
        return constraint.project(problem.dense_start(lipschitz), k)[0]
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def iht(
    problem: Problem,
    k: int,
    w0: Tensor | None = None,
    init: str = "backsolve",
    max_iter: int = 100,
    tol: float = 1e-7,
    step: str = "exact",
    lipschitz: float | None = None,
    refit: bool = False,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
) -> SolveResult:
    """Minimise f subject to w in `constraint` (by default ‖w‖₀ ≤ k) by iterative hard thresholding.

    Starts from the projection of w0, or from `initial_point(init)` when w0 is None. The
    objective never increases: a step is taken only when it lowers f, and iteration stops when
    none does or the relative decrease falls below `tol`. `refit` scores line-search supports
    by their exact ridge fit (see `_exact_step`): slower, lower objectives.
    """
    if step not in STEP_RULES:
        raise ValueError(f"step must be one of {', '.join(STEP_RULES)}, got {step!r}")
    L = problem.lipschitz() if lipschitz is None else lipschitz
    if w0 is None:
        w0 = initial_point(problem, k, init, L, constraint)
    x = make_iterate(problem, *constraint.project(w0, k))
    history = [x.f]
    converged = False
    for _ in range(max_iter):
        g = problem.gradient(x.w, x.r)
        if step == "exact":
            candidate = _exact_step(problem, x, g, k, 1.0 / L, tol, refit, constraint)
        else:
            candidate = threshold_step(problem, x, g, 1.0 / L, k, constraint=constraint)
        if not candidate.f < x.f:
            converged = True
            break
        decrease = x.f - candidate.f
        x = candidate
        history.append(x.f)
        if decrease <= tol * max(abs(x.f), 1.0):
            converged = True
            break
    return SolveResult(
        w=x.w,
        objective=x.f,
        iterations=len(history) - 1,
        history=history,
        converged=converged,
        residual=x.r,
        stopped_by=stop_reason(converged),
    )
