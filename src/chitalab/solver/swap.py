"""Support search with exact refit: swap one kept weight for one pruned weight while the
exactly refitted objective drops.

With c = H w̄ − a and H = GᵀG + ridge·I, the best f on a support S is const − ½ c_Sᵀ H_S⁻¹ c_S, so
every support is scored by its exact ridge fit (not by the old values on a new support, which is
why plain IHT steps never beat the backsolve they start from). The search keeps M⁻¹ with
M = ridge·I + G_S G_Sᵀ (n x n, the Woodbury side) and, with β_j = g_jᵀM⁻¹g_j, α_i = g_iᵀM⁻¹g_i,
γ_ij = g_iᵀM⁻¹g_j and u_j = −∂f/∂w_j at the current fit, scores the exchange i → j exactly:

    adding j lowers f by u_j² / (2·ridge·(1 + β_j)) and moves w_i to w_i − γ_ij·u_j / (ridge·(1 + β_j));
    then removing i raises f by ridge·w_i'² / (2·(1 − α_i + γ_ij² / (1 + β_j))).

The search runs in rounds. A round screens `width` entering candidates J (largest single-add
gain, from u and a screening copy of β for every coordinate) and `width` leaving candidates L
(lowest exact removal cost ridge·w_i²/(2(1 − α_i))), and makes up to `swaps_per_round` swaps
among them, each the best pair of J x L scored exactly. Within a round only J's and L's state is
kept exact: each swap changes M⁻¹ by two rank-one terms (Sherman-Morrison), which update the
candidates' rows M⁻¹g, their β, α, u and values in O(n·|J ∪ L|), and the fit's M⁻¹r₀ in O(n);
neither M⁻¹ nor G_S is read. At the end of a round the rank-2s correction is added to M⁻¹ in one
product, one pass over G_S brings every α and value up to date, the exact objective is checked,
and one pass over G brings u up to date. The screening β only ranks entering candidates (each
round computes the exact β of its own), so it is the start's throughout: keeping it exact would
cost a pass over G with two vectors per swap, or O(n²p) per refresh, and on MLPNet a refresh
before stopping never found another swap (docs/reports/search_speed). M is n x n
whatever k (Woodbury when n < k). The algebra that scores and accepts swaps runs in float64
whatever G's dtype; the screening β is in G's.

Every budget counts work (swaps), so the result depends on the seed and the data, never on the
clock; a time budget is an explicit opt-in, and the result says what stopped the search.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support, initial_support
from .block import one_thread
from .problem import Problem, hard_threshold
from .result import STOP_CONVERGED, STOP_TIME, STOP_WORK, SolveResult

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
    r0: Tensor  # (n,) float64: y − G_S w̄_S, the residual of w̄ on the support
    c: Tensor | None  # (n,) float64: G_S a_S (None without a first-order term)
    z: Tensor  # (n,) float64: M⁻¹ r₀
    q: Tensor | None  # (n,) float64: M⁻¹ c
    f: float
    beta: Tensor  # (p,) G's dtype: g_jᵀ M⁻¹ g_j for every coordinate at the start, for screening
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

    def residual(self, z: Tensor, q: Tensor | None) -> Tensor:
        """r = y − G_S w_S of the exact fit, which needs no pass over G_S: r = ρ·M⁻¹r₀ + M⁻¹c
        (the push-through identity, as in `ridge_on_support`)."""
        return self.rho * z if q is None else self.rho * z + q

    def move(self, z: Tensor, q: Tensor | None) -> Tensor:
        """The u with w_S = w̄_S + G_S u − a_S/ρ (see `values`)."""
        return z if q is None else z + q / self.rho

    def values(self, index: Tensor, products: Tensor) -> Tensor:
        """w at coordinates `index` from products = rows(index) @ move."""
        w = self.w_bar.index_select(0, index) + products
        return w if self.a is None else w - self.a.index_select(0, index) / self.rho

    def fit(
        self, support: Tensor, screening: Tensor | None = None, factor: tuple[Tensor, Tensor] | None = None
    ) -> _Fit:
        """The exact fit on `support`: M⁻¹ and α factored from scratch (O(n²k + n³)) unless
        `factor` gives them; the screening β computed anew (O(n²p)) unless given."""
        GS = self.rows(support)
        if factor is None:
            M = GS.T @ GS
            M.diagonal().add_(self.rho)
            L, info = torch.linalg.cholesky_ex(M)
            Minv = torch.cholesky_inverse(L) if int(info) == 0 else torch.linalg.inv(M)
            alpha = ((GS @ Minv) * GS).sum(dim=1)
        else:
            Minv, alpha = factor
        r0 = self.y - GS.T @ self.w_bar.index_select(0, support)
        c = None if self.a is None else GS.T @ self.a.index_select(0, support)
        z = Minv @ r0
        q = None if c is None else Minv @ c
        r = self.residual(z, q)
        wS = self.values(support, GS @ self.move(z, q))
        f = self.objective(support, wS, r)
        beta = self.quadratic_all(Minv) if screening is None else screening
        return _Fit(support, GS, Minv, alpha, wS, r0, c, z, q, f, beta, self.gradient(r))

    def gradient(self, r: Tensor) -> Tensor:
        """u = Gᵀr + ρ·w̄ − a for every coordinate (−∇f off the support), one pass over G."""
        return (self.problem.G.T @ r.to(self.problem.G.dtype)).to(F64) + self.push

    def quadratic_all(self, Minv: Tensor) -> Tensor:
        """g_jᵀ M⁻¹ g_j for every column of G, in G's dtype, SCREEN_CHUNK columns at a time
        (O(n²p): the setup's largest cost when p ≫ k)."""
        G = self.problem.G
        Minv = Minv.to(G.dtype)
        out = torch.empty(self.problem.p, dtype=G.dtype, device=G.device)
        for start, block in _column_chunks(self.problem):
            out[start : start + block.shape[1]] = ((Minv @ block) * block).sum(dim=0)
        return out


def _column_chunks(problem: Problem) -> Iterator[tuple[int, Tensor]]:
    """G's columns, SCREEN_CHUNK at a time (one copy in memory at once), with where each starts."""
    device = problem.G.device
    for start in range(0, problem.p, SCREEN_CHUNK):
        yield start, problem.columns(torch.arange(start, min(start + SCREEN_CHUNK, problem.p), device=device))


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
class _Round:
    """One round's candidates: the entering ones J (rows 0..m_J − 1 of G_C) and the leaving ones
    L (the rest), their rows M⁻¹g and quadratic forms gᵀM⁻¹g, the cross terms γ = G_L M⁻¹ G_Jᵀ,
    u_J and the leaving candidates' values, all kept exact while swaps are made, and the
    rank-one terms added to M⁻¹."""

    J: Tensor  # (m_J,) entering coordinates
    L: Tensor  # (m_L,) positions in the support of the leaving ones
    GC: Tensor  # (m_J + m_L, n) float64: their columns of G
    VC: Tensor  # (m_J + m_L, n) float64: rows M⁻¹ g
    quad: Tensor  # (m_J + m_L,) float64: gᵀ M⁻¹ g (β_J, then α_L)
    gamma: Tensor  # (m_L, m_J) float64: g_iᵀ M⁻¹ g_j
    uJ: Tensor  # (m_J,) float64: u_j
    wL: Tensor  # (m_L,) float64: the leaving candidates' values
    open: Tensor  # (m_J + m_L,) bool: not yet swapped
    betaJ0: Tensor  # (m_J,) float64: β_J at the round's start (α of a coordinate once it entered)
    vectors: list[Tensor]
    weights: list[float]
    entered: dict[int, float]  # position in the support → its α at the round's start

    @property
    def m(self) -> int:
        return self.J.numel()


@dataclass
class _Swap:
    leaving: int  # index into the round's leaving candidates
    entering: int  # index into the round's entering candidates
    change: float  # predicted change of f


def _round(s: _Search, x: _Fit, width: int) -> _Round | None:
    """The round's candidates: the `width` coordinates off the support of largest single-add gain
    u_j²/(2·ridge·(1 + β_j)), ranked with the screening copy of β, and the `width` kept ones of
    lowest removal cost; None when every coordinate is kept."""
    in_support = torch.zeros(s.problem.p, dtype=torch.bool, device=s.problem.G.device)
    in_support[x.support] = True
    gain_alone = (x.u * x.u / (1.0 + x.beta.to(F64).clamp_min(0))).masked_fill_(in_support, -1.0)
    m = min(width, int((~in_support).sum()))
    if m == 0:
        return None
    J = torch.topk(gain_alone, m).indices
    removal = x.wS * x.wS / (1.0 - x.alpha).clamp_min(torch.finfo(F64).tiny)
    L = torch.topk(removal, min(width, removal.numel()), largest=False).indices
    GC = torch.cat([s.rows(J), x.GS.index_select(0, L)])
    VC = GC @ x.Minv
    quad = (VC * GC).sum(dim=1)
    uJ = GC[:m] @ s.residual(x.z, x.q) + s.push.index_select(0, J)
    gamma = GC[m:] @ VC[:m].T
    opened = torch.ones(GC.shape[0], dtype=torch.bool, device=GC.device)
    return _Round(J, L, GC, VC, quad, gamma, uJ, x.wS.index_select(0, L), opened, quad[:m].clone(), [], [], {})


def _best_swap(s: _Search, rd: _Round) -> _Swap | None:
    """Score every pair of an open leaving and an open entering candidate exactly; the best pair,
    or None when no pair lowers f."""
    tiny = torch.finfo(F64).tiny
    m = rd.m
    betaJ, alphaL = rd.quad[:m], rd.quad[m:]
    sJ = s.rho * (1.0 + betaJ)
    gain = (rd.uJ * rd.uJ / (2.0 * sJ)).masked_fill(~rd.open[:m], -float("inf"))
    w_new = rd.wL[:, None] - rd.gamma * (rd.uJ / sJ)[None, :]
    denom = (1.0 - alphaL)[:, None] + rd.gamma * rd.gamma / (1.0 + betaJ)[None, :]
    change = s.rho * w_new * w_new / (2.0 * denom.clamp_min(tiny)) - gain[None, :]
    change.masked_fill_(~rd.open[m:, None], float("inf"))
    best = int(torch.argmin(change))
    a, b = divmod(best, change.shape[1])
    if not float(change[a, b]) < 0:
        return None
    return _Swap(a, b, float(change[a, b]))


def _apply(s: _Search, x: _Fit, rd: _Round, swap: _Swap) -> None:
    """Make the swap: M⁻¹ changes by −v₁v₁ᵀ/(1 + β_j) (adding g_j) and then +v₂v₂ᵀ/κ (removing
    g_i, κ = 1 − α_i once g_j is in); the candidates, M⁻¹r₀, M⁻¹c, the support, G_S's row and f
    are brought up to date in O(n·m) without reading M⁻¹ or G_S. The rank-one terms are kept
    for the round's end (`_close`), which brings M⁻¹, α and the values of the others up to date."""
    m = rd.m
    a, b = swap.leaving, swap.entering
    beta_j, gamma = float(rd.quad[b]), float(rd.gamma[a, b])
    v1, g_j, Ag_i, g_i = rd.VC[b].clone(), rd.GC[b].clone(), rd.VC[m + a].clone(), rd.GC[m + a]
    keep = 1.0 - (float(rd.quad[m + a]) - gamma**2 / (1.0 + beta_j))
    v2 = Ag_i - v1 * (gamma / (1.0 + beta_j))
    w1, w2 = -1.0 / (1.0 + beta_j), 1.0 / keep
    position, entering = int(rd.L[a]), int(rd.J[b])
    leaving = int(x.support[position])

    def updated(vector: Tensor, product: Tensor) -> Tensor:
        """M⁻¹·vector after the swap, from product = M⁻¹·vector before it."""
        return product + v1 * (w1 * float(v1 @ vector)) + v2 * (w2 * float(v2 @ vector))

    x.r0.add_(g_i, alpha=float(s.w_bar[leaving])).sub_(g_j, alpha=float(s.w_bar[entering]))
    x.z = updated(x.r0, x.z + Ag_i * float(s.w_bar[leaving]) - v1 * float(s.w_bar[entering]))
    if x.c is not None and x.q is not None and s.a is not None:
        x.c.sub_(g_i, alpha=float(s.a[leaving])).add_(g_j, alpha=float(s.a[entering]))
        x.q = updated(x.c, x.q - Ag_i * float(s.a[leaving]) + v1 * float(s.a[entering]))
    weights = torch.tensor([w1, w2], dtype=F64, device=v1.device)
    P = rd.GC @ torch.stack([v1, v2, s.residual(x.z, x.q), s.move(x.z, x.q)], dim=1)
    Gv = P[:, :2]
    rd.VC.addmm_(Gv * weights, torch.stack([v1, v2]))
    rd.quad.addmv_(Gv * Gv, weights)
    rd.gamma.addmm_(Gv[m:] * weights, Gv[:m].T)
    rd.uJ = P[:m, 2] + s.push.index_select(0, rd.J)
    rd.wL = s.values(x.support.index_select(0, rd.L), P[m:, 3])
    rd.open[b], rd.open[m + a] = False, False
    x.support[position] = entering
    x.GS[position] = g_j
    rd.entered[position] = float(rd.betaJ0[b])
    rd.vectors += [v1, v2]
    rd.weights += [w1, w2]
    x.f += swap.change


def _close(s: _Search, x: _Fit, rd: _Round) -> None:
    """The round's end: M⁻¹ += Σ weight·v vᵀ in one product, α and the values of every kept
    coordinate in one pass over G_S, the exact objective, and u in one pass over G. The
    screening β is left stale (see `_search`): updating it for every coordinate would cost a pass
    over G with two vectors per swap, more than recomputing it once."""
    V = torch.stack(rd.vectors)
    w = torch.tensor(rd.weights, dtype=F64, device=V.device)
    x.Minv.addmm_(V.T * w, V)
    x.z = x.Minv @ x.r0
    x.q = None if x.c is None else x.Minv @ x.c
    r = s.residual(x.z, x.q)
    for position, alpha in rd.entered.items():
        x.alpha[position] = alpha
    T = x.GS @ torch.cat([V, s.move(x.z, x.q)[None, :]]).T
    x.alpha.add_((T[:, :-1] ** 2) @ w)
    x.wS = s.values(x.support, T[:, -1])
    x.f = s.objective(x.support, x.wS, r)
    x.u = s.gradient(r)


def swap_search(
    problem: Problem,
    k: int,
    w0: Tensor | None = None,
    max_swaps: int = 10_000,
    time_budget_s: float | None = None,
    batch: int = 128,
    max_batch: int = 1024,
    swaps_per_round: int = 64,
    tol: float = 1e-10,
    refresh_every: int = 1000,
) -> SolveResult:
    """Minimise f subject to ‖w‖₀ ≤ k by exchanging one kept and one pruned coordinate at a time,
    each support scored by its exact ridge fit (see the module docstring).

    Starts from the support of w0 (default: the backsolve support, so the result is never worse
    than CHITA-BSO) and its exact fit; see `_search` for the rounds and the budgets.
    """
    _check(problem, batch, max_batch, swaps_per_round)
    k = max(0, min(k, problem.p))
    if k in (0, problem.p):
        return _trivial(problem, k)
    s = _Search(problem)
    x = s.fit(_start_support(problem, k, w0))
    starts = [] if w0 is None else [hard_threshold(w0.to(problem.w_bar), k)[0]]
    return _search(s, x, starts, max_swaps, time_budget_s, batch, max_batch, swaps_per_round, tol, refresh_every)


def _check(problem: Problem, batch: int, max_batch: int, swaps_per_round: int) -> None:
    if problem.ridge <= 0:
        raise ValueError(f"swap_search needs a positive ridge (l2 > 0), got ridge {problem.ridge}")
    if batch < 1 or max_batch < batch or swaps_per_round < 1:
        raise ValueError(
            f"need 1 <= batch <= max_batch and swaps_per_round >= 1, got {batch}, {max_batch}, {swaps_per_round}"
        )


def _trivial(problem: Problem, k: int) -> SolveResult:
    """Nothing to search when every weight or none is kept."""
    if k == 0:
        w = torch.zeros_like(problem.w_bar)
    else:
        w = fit_on_support(problem, torch.arange(problem.p, device=problem.G.device))
    f = problem.objective(w)
    return SolveResult(w=w, objective=f, iterations=0, history=[f], converged=True, stopped_by=STOP_CONVERGED)


def _search(
    s: _Search,
    x: _Fit,
    starts: list[Tensor],
    max_swaps: int,
    time_budget_s: float | None,
    batch: int,
    max_batch: int,
    swaps_per_round: int,
    tol: float,
    refresh_every: int,
) -> SolveResult:
    """The rounds from the fit x: each makes up to `swaps_per_round` swaps among its candidates
    (`_round`) while the best pair lowers f by more than tol·max(|f|, 1). A round without such a
    pair widens the candidates fourfold up to `max_batch`; the search has converged when the
    widest round has none. It also stops after `max_swaps` swaps, or after `time_budget_s`
    seconds when one is given (opt-in: the result then depends on the machine's speed). Each
    round's end checks the exact objective: when rounding made it not drop, M is refactored, and
    if it still has not dropped the round is undone and the search stops (converged). M is
    refactored from scratch every `refresh_every` swaps."""
    problem = s.problem
    started = time.perf_counter()

    def timed_out() -> bool:
        return time_budget_s is not None and time.perf_counter() - started >= time_budget_s

    starts = [_dense(problem, x), *starts]
    with one_thread(problem.G.device):  # small operations: thread hand-offs cost more than they save
        history = [x.f]
        swaps, since_refresh, stop = 0, 0, STOP_CONVERGED
        width = batch
        while True:
            if swaps >= max_swaps:
                stop = STOP_WORK
                break
            if timed_out():
                stop = STOP_TIME
                break
            rd = _round(s, x, width)
            if rd is None:
                break
            f_start, support_start = x.f, x.support.clone()
            for _ in range(min(swaps_per_round, max_swaps - swaps)):
                swap = _best_swap(s, rd)
                if swap is None or -swap.change <= tol * max(abs(x.f), 1.0):
                    break
                _apply(s, x, rd, swap)
                swaps += 1
            if not rd.vectors:
                if width >= max_batch:
                    break
                width = min(max_batch, 4 * width)
                continue
            _close(s, x, rd)
            since_refresh += len(rd.vectors) // 2
            if not x.f < f_start or since_refresh >= refresh_every:
                x = s.fit(x.support, screening=x.beta)  # drifted, or due: refactor M from scratch
                since_refresh = 0
                if not x.f < f_start:  # the predicted gains were rounding error: undo the round and stop
                    x = s.fit(support_start, screening=x.beta)
                    swaps -= len(rd.vectors) // 2
                    break
            history.append(x.f)
            width = batch
    w = _dense(problem, x)
    f = problem.objective(w)
    for start in starts:  # a start wins only in the last digits of a low-precision dtype
        f_start = problem.objective(start)
        if f_start < f:
            w, f = start, f_start
    return SolveResult(
        w=w, objective=f, iterations=swaps, history=history, converged=stop == STOP_CONVERGED, stopped_by=stop
    )


class _SharedFactor:
    """What every ridge ρ of a grid shares on one support S: the eigendecomposition
    G_S G_Sᵀ = Q diag(Λ) Qᵀ (O(n²k + n³), once), after which each ρ's M⁻¹ = Q diag(1/(Λ + ρ)) Qᵀ,
    α_i = Σ_t (G_S Q)²_it / (Λ_t + ρ) and the screening β_j = Σ_t (Qᵀg_j)²_t / (Λ_t + ρ) of every
    coordinate cost O(n³), O(nk) and, for the whole grid in one pass over G, O(n²p)."""

    def __init__(self, s: _Search, support: Tensor, ridges: Sequence[float]):
        GS = s.rows(support)
        eigenvalues, Q = torch.linalg.eigh(GS.T @ GS)
        self.Q = Q
        self.inverse = 1.0 / (
            eigenvalues.clamp_min(0)[None, :] + torch.tensor(ridges, dtype=F64, device=Q.device)[:, None]
        )
        self.alpha = ((GS @ Q) ** 2) @ self.inverse.T  # (k, len(ridges))
        problem = s.problem
        self.beta = torch.empty(len(ridges), problem.p, dtype=problem.G.dtype, device=problem.G.device)
        Qt, inverse = Q.T.to(problem.G.dtype), self.inverse.to(problem.G.dtype)
        for start, block in _column_chunks(problem):
            self.beta[:, start : start + block.shape[1]] = inverse @ (Qt @ block) ** 2

    def factor(self, t: int) -> tuple[Tensor, Tensor]:
        """M⁻¹ and α for the t-th ridge."""
        return (self.Q * self.inverse[t]) @ self.Q.T, self.alpha[:, t].contiguous()


def swap_path(
    problems: Sequence[Problem],
    k: int,
    w0: Tensor | None = None,
    max_swaps: int = 10_000,
    time_budget_s: float | None = None,
    batch: int = 128,
    max_batch: int = 1024,
    swaps_per_round: int = 64,
    tol: float = 1e-10,
    refresh_every: int = 1000,
) -> list[SolveResult]:
    """`swap_search` for each of `problems` (one G, w̄ and first-order term under a grid of ridges),
    each from the same start (w0's support, default the backsolve support) with the λ-independent
    factorisation of that start shared (`_SharedFactor`), so the grid's set-up costs about one λ's.
    Budgets are per problem. With a first-order term the backsolve support depends on λ; then
    each problem is solved alone."""
    for pr in problems:
        _check(pr, batch, max_batch, swaps_per_round)
    first = problems[0]
    k = max(0, min(k, first.p))
    if k in (0, first.p):
        return [_trivial(pr, k) for pr in problems]
    supports = [_start_support(pr, k, w0) for pr in problems]
    shared = None
    if all(torch.equal(supports[0], other) for other in supports[1:]):
        shared = _SharedFactor(_Search(first), supports[0], [pr.ridge for pr in problems])
    starts = [] if w0 is None else [hard_threshold(w0.to(first.w_bar), k)[0]]
    results = []
    for t, pr in enumerate(problems):
        s = _Search(pr)
        x = s.fit(supports[t]) if shared is None else s.fit(supports[t], shared.beta[t], shared.factor(t))
        results.append(
            _search(s, x, starts, max_swaps, time_budget_s, batch, max_batch, swaps_per_round, tol, refresh_every)
        )
    return results
