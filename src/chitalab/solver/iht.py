"""Iterative hard thresholding with the paper's step-size scheme."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support, initial_support
from .problem import Problem, hard_threshold
from .result import SolveResult

STEP_RULES = ("exact", "lipschitz")
INITS = ("backsolve", "magnitude")
LINE_SEARCH_DOUBLINGS = 10


@dataclass
class _Iterate:
    """A k-sparse point with its support, residual and objective."""

    w: Tensor
    support: Tensor
    r: Tensor
    f: float


def _make_iterate(problem: Problem, w: Tensor, support: Tensor) -> _Iterate:
    r = problem.residual(w, support)
    return _Iterate(w, support, r, problem.objective(w, r))


def _threshold_step(problem: Problem, x: _Iterate, g: Tensor, eta: float, k: int) -> _Iterate:
    """H_k(w − η∇f): a gradient step, then keep the k largest magnitudes."""
    w, support = hard_threshold(x.w - eta * g, k)
    return _make_iterate(problem, w, support)


def _change_step(w_S: Tensor, g_S: Tensor, off_support_max: Tensor) -> float:
    """Smallest step at which an off-support coordinate would overtake one on the support.

    Off the support w = 0, so coordinate j reaches |η g_j| ≤ η M (M = max off-support |g|).
    Coordinate i on it reaches |w_i − η g_i|, which falls below η M at
    η = |w_i| / (|g_i| + M) when it moves towards zero, or η = |w_i| / (M − |g_i|) when it
    moves away but more slowly than M grows.
    """
    abs_g = g_S.abs()
    towards_zero = torch.sign(w_S) == torch.sign(g_S)
    rate = torch.where(towards_zero, abs_g + off_support_max, off_support_max - abs_g)
    steps = torch.where(rate > 0, w_S.abs() / rate.clamp_min(torch.finfo(w_S.dtype).tiny), torch.inf)
    return float(steps.min()) if steps.numel() else float("inf")


def _exact_step(
    problem: Problem, x: _Iterate, g: Tensor, k: int, inv_lipschitz: float, stall_tol: float, refit: bool
) -> _Iterate:
    """The paper's step: the exact minimiser along −∇f on the support when the support stays
    and the step makes progress; otherwise (the support would change, or the iterate sits at
    the optimum of its support) a short doubling line search from just below the
    support-changing step, compared with the safe 1/L step. Returns x itself when no
    candidate lowers f."""
    g_S = g.index_select(0, x.support)
    w_S = x.w.index_select(0, x.support)
    off = g.abs()
    off[x.support] = 0
    eta_change = _change_step(w_S, g_S, off.max())
    best = x
    Gg = problem.G.index_select(1, x.support) @ g_S
    g_norm2 = float(g_S @ g_S)
    curvature = float(Gg @ Gg) + problem.ridge * g_norm2
    eta_opt = g_norm2 / curvature if curvature > 0 else float("inf")
    if eta_opt < eta_change:
        w = x.w.clone()
        w[x.support] = w_S - eta_opt * g_S
        r = x.r + eta_opt * Gg
        exact = _Iterate(w, x.support, r, problem.objective(w, r))
        if x.f - exact.f > stall_tol * max(abs(x.f), 1.0):
            return exact
        best = exact if exact.f < best.f else best
    # Progress needs a new support: try the safe 1/L step and steps from just below the
    # support-changing one, doubled LINE_SEARCH_DOUBLINGS times; keep the best.
    candidates = [_threshold_step(problem, x, g, inv_lipschitz, k)]
    eta = eta_change * (1 - 1e-4)
    for _ in range(LINE_SEARCH_DOUBLINGS):
        if not 0 < eta < float("inf"):
            break
        candidate = _threshold_step(problem, x, g, eta, k)
        if refit:
            candidate = _make_iterate(problem, fit_on_support(problem, candidate.support), candidate.support)
        candidates.append(candidate)
        eta *= 2
    for candidate in candidates:
        if candidate.f < best.f:
            best = candidate
    return best


def initial_point(problem: Problem, k: int, init: str, lipschitz: float | None = None) -> Tensor:
    """The k-sparse start: the magnitude support of `Problem.dense_start`, with its exact ridge fit
    ("backsolve", so no solver ends worse than CHITA-BSO) or with w̄'s values ("magnitude")."""
    if init == "backsolve":
        return fit_on_support(problem, initial_support(problem, k))
    if init == "magnitude":
        return hard_threshold(problem.dense_start(lipschitz), k)[0]
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
) -> SolveResult:
    """Minimise f subject to ‖w‖₀ ≤ k by iterative hard thresholding.

    Starts from H_k(w0), or from `initial_point(init)` when w0 is None. The objective never increases:
    a step is taken only when it lowers f, and iteration stops when none does or the
    relative decrease falls below `tol`. `refit` scores line-search supports by their
    exact ridge fit (see `_exact_step`): slower, lower objectives.
    """
    if step not in STEP_RULES:
        raise ValueError(f"step must be one of {', '.join(STEP_RULES)}, got {step!r}")
    L = problem.lipschitz() if lipschitz is None else lipschitz
    if w0 is None:
        w0 = initial_point(problem, k, init, L)
    x = _make_iterate(problem, *hard_threshold(w0, k))
    history = [x.f]
    converged = False
    for _ in range(max_iter):
        g = problem.gradient(x.w, x.r)
        if step == "exact":
            candidate = _exact_step(problem, x, g, k, 1.0 / L, tol, refit)
        else:
            candidate = _threshold_step(problem, x, g, 1.0 / L, k)
        if not candidate.f < x.f:
            converged = True
            break
        decrease = x.f - candidate.f
        x = candidate
        history.append(x.f)
        if decrease <= tol * max(abs(x.f), 1.0):
            converged = True
            break
    return SolveResult(w=x.w, objective=x.f, iterations=len(history) - 1, history=history, converged=converged)
