"""Support search with exact refit: swap one kept weight for one pruned weight while the
exactly refitted objective drops.

With c = H w̄ − a and H = GᵀG + ridge·I, the best f on a support S is const − ½ c_Sᵀ H_S⁻¹ c_S, so
every support is scored by its exact ridge fit (not by the old values on a new support, which is
why plain IHT steps never beat the backsolve they start from). The search keeps M⁻¹ with
M = ridge·I + G_S G_Sᵀ (n x n, the Woodbury side) and, with β_j = g_jᵀM⁻¹g_j, α_i = g_iᵀM⁻¹g_i,
γ_ij = g_iᵀM⁻¹g_j and u_j = −∂f/∂w_j at the current fit, scores the exchange i → j exactly:

    adding j lowers f by u_j² / (2·ridge·(1 + β_j)) and moves w_i to w_i − γ_ij·u_j / (ridge·(1 + β_j));
    then removing i raises f by ridge·w_i'² / (2·(1 − α_i + γ_ij² / (1 + β_j))).

Candidates are screened in batches: entering j by the gain of adding j alone (from u and a
screening copy of β for every coordinate, computed once in O(n²p)), leaving i by their exact
removal cost ridge·w_i²/(2(1 − α_i)); every pair of the batch is then scored exactly. An accepted
swap updates M⁻¹, α and the batch's own β, u and M⁻¹g_j by two rank-one (Sherman-Morrison)
updates with one pass over G_S, O(n² + n·k + n·batch), instead of refactoring; up to
`swaps_per_pass` swaps are made from one screening, after which one pass over G brings u and the
screening β up to date. M is n x n whatever k (Woodbury when n < k; with k < n the k x k side
would be cheaper, not done). The algebra that scores and accepts swaps runs in float64 whatever
G's dtype; the screening β is in G's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .backsolve import fit_on_support, initial_support
from .problem import Problem, hard_threshold
from .result import SolveResult
from .ridge import with_l2

F64 = torch.float64
SCREEN_CHUNK = 4096  # columns of G per block when computing g_jᵀ M⁻¹ g_j for all j


@dataclass
class _Fit:
    """The exact ridge fit on a support, with the factor state the swap scores need."""

    support: Tensor  # (k,) coordinates
    GS: Tensor  # (k, n) float64: row t is column support[t] of G
    Minv: Tensor  # (n, n) float64: (ridge·I + G_S G_Sᵀ)⁻¹
    alpha: Tensor  # (k,) float64: g_iᵀ M⁻¹ g_i
    wS: Tensor  # (k,) float64: the fitted values
    r: Tensor  # (n,) float64: y − G_S w_S
    r0: Tensor  # (n,) float64: y − G_S w̄_S, the residual of w̄ on the support
    c: Tensor | None  # (n,) float64: G_S a_S (None without a first-order term)
    f: float
    beta: Tensor  # (p,) G's dtype: g_jᵀ M⁻¹ g_j for every coordinate, for screening entering ones
    u: Tensor  # (p,) float64: −∇f off the support, Gᵀr + ridge·w̄ − a (G's precision)


class _Search:
    """Problem data in float64 that every fit and score uses."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.rho = float(problem.ridge)
        self.y = problem.y.to(F64)
        self.w_bar = problem.w_bar.to(F64)
        self.a = None if problem.a is None else problem.a.to(F64)
        self.w_bar_sq = float(self.w_bar @ self.w_bar)
        self.a_w_bar = 0.0 if self.a is None else float(self.a @ self.w_bar)
        # ρ·w̄ − a: the part of u = −∇f off the support that does not depend on the residual.
        self.push = self.rho * self.w_bar if self.a is None else self.rho * self.w_bar - self.a

    def rows(self, index: Tensor) -> Tensor:
        """Columns `index` of G as rows of a float64 matrix."""
        return self.problem.columns(index).T.to(F64).contiguous()

    def objective(self, support: Tensor, wS: Tensor, r: Tensor) -> float:
        """f of the point that is wS on `support` and zero elsewhere, with r = y − G_S wS."""
        w_bar_S = self.w_bar.index_select(0, support)
        d = wS - w_bar_S
        value = 0.5 * float(r @ r) + 0.5 * self.rho * (float(d @ d) + self.w_bar_sq - float(w_bar_S @ w_bar_S))
        if self.a is not None:
            a_S = self.a.index_select(0, support)
            value += float(a_S @ wS) - self.a_w_bar
        return value

    def solution(self, Minv: Tensor, r0: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """The exact fit on the support whose M⁻¹, r₀ = y − G_S w̄_S and c = G_S a_S are given
        (as in `ridge_on_support`: the move away from w̄ via the push-through identity): u with
        w_S = w̄_S + G_Sᵀu − a_S/ρ (see `values`), and the residual r, which needs no pass over
        G_S: with z = M⁻¹r₀ and q = M⁻¹c, r = y − G_S w_S = ρz + q."""
        z = Minv @ r0
        if c is None:
            return z, self.rho * z
        q = Minv @ c
        return z + q / self.rho, self.rho * z + q

    def values(self, support: Tensor, move: Tensor) -> Tensor:
        """w_S = w̄_S + move − a_S/ρ, with move = G_Sᵀu."""
        wS = self.w_bar.index_select(0, support) + move
        return wS if self.a is None else wS - self.a.index_select(0, support) / self.rho

    def fit(self, support: Tensor, screening: Tensor | None = None) -> _Fit:
        """Factor M for `support` from scratch (O(n²k + n³)) and fit; the screening β is computed
        anew (O(n²p)) unless given (a refactor keeps the incrementally updated copy)."""
        GS = self.rows(support)
        M = GS.T @ GS
        M.diagonal().add_(self.rho)
        L, info = torch.linalg.cholesky_ex(M)
        Minv = torch.cholesky_inverse(L) if int(info) == 0 else torch.linalg.inv(M)
        alpha = ((GS @ Minv) * GS).sum(dim=1)
        r0 = self.y - GS.T @ self.w_bar.index_select(0, support)
        c = None if self.a is None else GS.T @ self.a.index_select(0, support)
        move, r = self.solution(Minv, r0, c)
        wS = self.values(support, GS @ move)
        f = self.objective(support, wS, r)
        u = (self.problem.G.T @ r.to(self.problem.G.dtype)).to(F64) + self.push
        beta = self.quadratic_all(Minv) if screening is None else screening
        return _Fit(support, GS, Minv, alpha, wS, r, r0, c, f, beta, u)

    def quadratic_all(self, Minv: Tensor) -> Tensor:
        """g_jᵀ M⁻¹ g_j for every column of G, in G's dtype, SCREEN_CHUNK columns at a time
        (O(n²p): the setup's largest cost when p ≫ k)."""
        G = self.problem.G
        Minv = Minv.to(G.dtype)
        out = torch.empty(self.problem.p, dtype=G.dtype, device=G.device)
        for start in range(0, self.problem.p, SCREEN_CHUNK):
            block = self.problem.columns(
                torch.arange(start, min(start + SCREEN_CHUNK, self.problem.p), device=G.device)
            )
            out[start : start + block.shape[1]] = ((Minv @ block) * block).sum(dim=0)
        return out


def _dense(problem: Problem, x: _Fit) -> Tensor:
    """The fit as a full-length vector in the problem's dtype."""
    return torch.zeros_like(problem.w_bar).index_copy_(0, x.support, x.wS.to(problem.w_bar.dtype))


def _start_support(problem: Problem, k: int, w0: Tensor | None) -> Tensor:
    """The k-sparse start: the backsolve support, or w0's largest k entries padded (when w0 has
    fewer than k nonzeros) with the largest entries of w̄ outside them."""
    if w0 is None:
        return initial_support(problem, k)
    w0 = w0.to(device=problem.G.device)
    nonzero = torch.nonzero(w0).flatten()
    if nonzero.numel() >= k:
        return nonzero[torch.topk(w0.index_select(0, nonzero).abs(), k).indices].sort().values
    score = problem.w_bar.abs().to(F64).masked_fill(w0 != 0, float("inf"))
    return torch.topk(score, k).indices.sort().values


@dataclass
class _Entering:
    """The screened entering candidates of one round, kept exact while swaps are made."""

    J: Tensor  # (m,) coordinates
    GJ: Tensor  # (m, n) float64: their columns of G
    VJ: Tensor  # (m, n) float64: rows M⁻¹ g_j
    beta: Tensor  # (m,) float64: g_jᵀ M⁻¹ g_j
    u: Tensor  # (m,) float64: u_j at the current fit
    open: Tensor  # (m,) bool: still outside the support


@dataclass
class _Swap:
    position: int  # index into the support of the leaving coordinate
    column: int  # index into the entering candidates of the entering coordinate
    change: float  # predicted change of f


def _entering(s: _Search, x: _Fit, in_support: Tensor, width: int) -> _Entering | None:
    """The `width` coordinates off the support of largest single-add gain u_j²/(2·ridge·(1 + β_j)),
    ranked with the screening copy of β, with their exact β and u."""
    gain_alone = (x.u * x.u / (1.0 + x.beta.to(F64).clamp_min(0))).masked_fill_(in_support, -1.0)
    width = min(width, int((~in_support).sum()))
    if width == 0:
        return None
    J = torch.topk(gain_alone, width).indices
    GJ = s.rows(J)
    VJ = GJ @ x.Minv
    beta = (VJ * GJ).sum(dim=1)
    u = GJ @ x.r + s.push.index_select(0, J)
    return _Entering(J, GJ, VJ, beta, u, torch.ones_like(J, dtype=torch.bool))


def _best_swap(s: _Search, x: _Fit, e: _Entering, width: int) -> _Swap | None:
    """Score every pair of the `width` kept coordinates of lowest removal cost and the open
    entering candidates exactly; the best pair, or None when no pair lowers f."""
    tiny = torch.finfo(F64).tiny
    sJ = s.rho * (1.0 + e.beta)
    gain = (e.u * e.u / (2.0 * sJ)).masked_fill(~e.open, -float("inf"))
    removal = s.rho * x.wS * x.wS / (2.0 * (1.0 - x.alpha).clamp_min(tiny))
    leaving = torch.topk(removal, min(width, removal.numel()), largest=False).indices
    gamma = x.GS.index_select(0, leaving) @ e.VJ.T
    w_new = x.wS.index_select(0, leaving)[:, None] - gamma * (e.u / sJ)[None, :]
    denom = (1.0 - x.alpha.index_select(0, leaving))[:, None] + gamma * gamma / (1.0 + e.beta)[None, :]
    change = s.rho * w_new * w_new / (2.0 * denom.clamp_min(tiny)) - gain[None, :]
    best = int(torch.argmin(change))
    a, b = divmod(best, change.shape[1])
    if not float(change[a, b]) < 0:
        return None
    return _Swap(int(leaving[a]), b, float(change[a, b]))


def _apply(s: _Search, x: _Fit, e: _Entering, swap: _Swap) -> tuple[_Fit, Tensor, Tensor]:
    """The fit after the swap, O(n² + n·k + n·m) without reading G: two Sherman-Morrison updates of
    M⁻¹ (add g_j, then remove g_i), r₀ and c updated by the two columns, one row of G_S replaced,
    and a single pass over G_S for α's two updates and the new values; the entering candidates'
    V, β and u brought up to date. M⁻¹, G_S, α, r₀ and c are updated in place (x keeps its
    support and values). Returns the fit and the two update vectors with their weights, (2, n)
    and (2,), for the screening copy of β (see `_screen`)."""
    b, i = swap.column, swap.position
    v1, beta_j, g_j = e.VJ[b].clone(), float(e.beta[b]), e.GJ[b]
    Minv, GS, alpha = x.Minv, x.GS, x.alpha
    g_i = GS[i].clone()
    Minv.addr_(v1, v1, alpha=-1.0 / (1.0 + beta_j))
    keep = 1.0 - (float(alpha[i]) - float(g_i @ v1) ** 2 / (1.0 + beta_j))  # 1 − α_i once g_j is in
    v2 = Minv @ g_i
    Minv.addr_(v2, v2, alpha=1.0 / keep)
    leaving, entering = int(x.support[i]), int(e.J[b])
    x.r0.add_(g_i, alpha=float(s.w_bar[leaving])).sub_(g_j, alpha=float(s.w_bar[entering]))
    if x.c is not None and s.a is not None:
        x.c.sub_(g_i, alpha=float(s.a[leaving])).add_(g_j, alpha=float(s.a[entering]))
    GS[i] = g_j
    support = x.support.clone()
    support[i] = entering
    move, r = s.solution(Minv, x.r0, x.c)
    T = GS @ torch.stack([v1, v2, move], dim=1)  # the one pass over G_S (row i is g_j's already)
    alpha.sub_(T[:, 0] ** 2 / (1.0 + beta_j))
    alpha[i] = beta_j / (1.0 + beta_j)
    alpha.add_(T[:, 1] ** 2 / keep)
    wS = s.values(support, T[:, 2])
    f = s.objective(support, wS, r)
    e.VJ.addr_(e.GJ @ v1, v1, alpha=-1.0 / (1.0 + beta_j)).addr_(e.GJ @ v2, v2, alpha=1.0 / keep)
    e.beta = (e.VJ * e.GJ).sum(dim=1)
    e.u = e.GJ @ r + s.push.index_select(0, e.J)
    e.open[b] = False
    weights = torch.tensor([-1.0 / (1.0 + beta_j), 1.0 / keep], dtype=F64, device=v1.device)
    fitted = _Fit(support, GS, Minv, alpha, wS, r, x.r0, x.c, f, x.beta, x.u)
    return fitted, torch.stack([v1, v2]), weights


def _screen(s: _Search, x: _Fit, vectors: list[Tensor], weights: list[Tensor]) -> None:
    """Bring the screening copy of β (β_j += Σ weight·(g_jᵀv)²) and u up to date after a round of
    swaps, in one pass over G. The operand is transposed-contiguous: a row-major (n, m) one takes a
    skinny-GEMM path that is several times slower on CPU."""
    G = s.problem.G
    V = torch.cat([*vectors, x.r[None, :]]).to(G.dtype)
    T = (G.T @ V.T).to(F64)
    w = torch.cat(weights)
    x.beta.add_(((T[:, :-1] ** 2) @ w).to(x.beta.dtype))
    x.u = T[:, -1] + s.push


def swap_search(
    problem: Problem,
    k: int,
    w0: Tensor | None = None,
    max_swaps: int = 10_000,
    time_budget_s: float | None = None,
    batch: int = 64,
    max_batch: int = 1024,
    swaps_per_pass: int = 8,
    tol: float = 1e-10,
    refresh_every: int = 200,
) -> SolveResult:
    """Minimise f subject to ‖w‖₀ ≤ k by exchanging one kept and one pruned coordinate at a time,
    each support scored by its exact ridge fit (see the module docstring).

    Starts from the support of w0 (default: the backsolve support, so the result is never worse
    than CHITA-BSO) and its exact fit. Each round screens the `batch` entering candidates of largest
    single-add gain (one pass over G per round) and makes up to `swaps_per_pass` swaps among them,
    each the best pair of an open entering candidate and one of the `batch` kept coordinates of
    lowest removal cost. When the first pair of a round does not lower f by more than
    tol·max(|f|, 1) the batch is widened fourfold up to `max_batch`, and the search stops
    (converged) when the widest batch has no improving pair. It also stops after `max_swaps` swaps
    or `time_budget_s` seconds. Each accepted swap is checked on the recomputed fit (the objective
    must drop); M⁻¹ is refactored every `refresh_every` swaps (unless the time is up: that refactor
    would overrun the budget) and whenever that check fails.
    Needs ridge > 0.
    """
    if problem.ridge <= 0:
        raise ValueError(f"swap_search needs a positive ridge (l2 > 0), got ridge {problem.ridge}")
    if batch < 1 or max_batch < batch or swaps_per_pass < 1:
        raise ValueError(
            f"need 1 <= batch <= max_batch and swaps_per_pass >= 1, got {batch}, {max_batch}, {swaps_per_pass}"
        )
    started = time.perf_counter()
    k = max(0, min(k, problem.p))
    if k in (0, problem.p):
        w = (
            torch.zeros_like(problem.w_bar)
            if k == 0
            else fit_on_support(problem, torch.arange(k, device=problem.G.device))
        )
        f = problem.objective(w)
        return SolveResult(w=w, objective=f, iterations=0, history=[f], converged=True)

    def in_time() -> bool:
        return time_budget_s is None or time.perf_counter() - started < time_budget_s

    s = _Search(problem)
    x = s.fit(_start_support(problem, k, w0))
    starts = [_dense(problem, x)] + ([] if w0 is None else [hard_threshold(w0.to(problem.w_bar), k)[0]])
    history = [x.f]
    swaps, since_refresh, converged, stalled = 0, 0, False, False
    width = batch
    while swaps < max_swaps and in_time() and not stalled:
        in_support = torch.zeros(problem.p, dtype=torch.bool, device=problem.G.device)
        in_support[x.support] = True
        entering = _entering(s, x, in_support, width)
        vectors: list[Tensor] = []
        weights: list[Tensor] = []
        fresh = False
        for _ in range(swaps_per_pass if entering is not None else 0):
            assert entering is not None
            swap = _best_swap(s, x, entering, width)
            if swap is None or -swap.change <= tol * max(abs(x.f), 1.0) or swaps >= max_swaps or not in_time():
                break
            f_before = x.f
            candidate, v, wt = _apply(s, x, entering, swap)  # updates x's factor state in place
            since_refresh += 1
            if not candidate.f < f_before or (since_refresh >= refresh_every and in_time()):
                # drifted, or due: refactor M from scratch (the screening β is brought up to date below)
                candidate = s.fit(candidate.support, screening=x.beta)
                since_refresh, fresh = 0, True
                if not candidate.f < f_before:
                    stalled = True  # the predicted gain was rounding error: keep x's support and values
                    break
            x = candidate
            history.append(x.f)
            swaps += 1
            vectors.append(v)
            weights.append(wt)
            if fresh:
                break
        if stalled:
            converged = True
            break
        if not vectors:
            if width >= max_batch or entering is None:
                converged = in_time() and swaps < max_swaps
                break
            width = min(max_batch, 4 * width)
            continue
        _screen(s, x, vectors, weights)
        width = batch
    w = _dense(problem, x)
    f = problem.objective(w)
    for start in starts:  # a start wins only in the last digits of a low-precision dtype
        f_start = problem.objective(start)
        if f_start < f:
            w, f = start, f_start
    return SolveResult(w=w, objective=f, iterations=swaps, history=history, converged=converged)


def swap_path(
    problem: Problem,
    k: int,
    l2s: Sequence[float],
    w0: Tensor | None = None,
    time_budget_s: float | None = None,
    **options: Any,
) -> list[SolveResult]:
    """`swap_search` for each λ in `l2s` (the problem's own ridge is not used), each warm-started
    from the previous λ's solution (the first from w0, default backsolve), so that later λ need few
    swaps; `time_budget_s` is shared among the λ still to solve. Results are in the order of `l2s`.
    A pruner then keeps the λ whose solution has the lowest loss on held-out training samples."""
    started = time.perf_counter()
    results: list[SolveResult] = []
    start = w0
    for index, l2 in enumerate(l2s):
        budget = None
        if time_budget_s is not None:
            budget = max(0.0, (time_budget_s - (time.perf_counter() - started)) / (len(l2s) - index))
        result = swap_search(with_l2(problem, l2), k, w0=start, time_budget_s=budget, **options)
        results.append(result)
        start = result.w
    return results
