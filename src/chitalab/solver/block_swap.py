"""Swap search for the block-diagonal model: exchanges within a block and between blocks.

Under the block-diagonal approximation the objective is a sum of block objectives
f_b(w_b) = ½(w_b − w̄_b)ᵀ(K_b + ρI)(w_b − w̄_b) with K_b = G_bᵀG_b, and one budget k covers all
blocks. With H = K_b + ρI and c = H·w̄_b, the best f_b on a support S is ½w̄ᵀHw̄ − ½c_Sᵀw_S with
w_S = H_SS⁻¹c_S, so every move is scored by the exact refit:

* adding j ∉ S lowers f_b by u_j² / (2 s_j), with u_j = c_j − H_jS w_S (= −∂f/∂w_j) and the Schur
  complement s_j = H_jj − H_jS H_SS⁻¹ H_Sj;
* removing i ∈ S raises it by w_i² / (2 [H_SS⁻¹]_ii);
* exchanging i for j inside one block changes it by w_i'² / (2 d_i') − u_j² / (2 s_j), with
  z = H_SS⁻¹H_Sj, w_i' = w_i − z_i u_j / s_j and d_i' = [H_SS⁻¹]_ii + z_i² / s_j.

A move between blocks (remove the cheapest weight of one block, add the best of another) lets
the search re-allocate the budget across blocks, which a per-layer allocation does only by
proxy. Each round takes the best move over all blocks, refits the (one or two) blocks it
touches from a fresh Cholesky factor, and stops when no move lowers f by more than the
tolerance, or on the swap budget (or an opt-in time budget). Every accepted move lowers the exact objective, so
the result is never above the start (the block backsolve). Blocks are held as their Gram
matrices K_b (Σ p_b² numbers), one memory group of blocks at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import check_int, check_number
from .block import BlockSearch
from .result import STOP_CONVERGED, STOP_TIME, STOP_WORK

F64 = torch.float64
NEG_INF = float("-inf")


@dataclass
class _State:
    """One block at the current support, with its best moves."""

    start: int
    K: Tensor  # (p_b, p_b) K_b = G_bᵀG_b in its own dtype; H = K_b + ρI is never formed
    ridge: float  # ρ
    diagonal: Tensor  # (p_b,) float64: H's diagonal
    c: Tensor  # (p_b,) H w̄_b
    eligible: Tensor  # (p_b,) bool: may enter the support
    constant: float  # ½w̄_bᵀHw̄_b: the block objective with nothing kept
    support: Tensor  # (k_b,) local indices
    w: Tensor  # (k_b,) fitted values on the support
    f: float  # block objective at the fit
    remove_cost: float = float("inf")  # cheapest removal
    remove_at: int = -1  # its position in `support`
    add_gain: float = NEG_INF  # best addition
    add_at: int = -1  # its local index
    pair_change: float = float("inf")  # best exchange inside the block
    pair: tuple[int, int] = (-1, -1)  # (position in support, local index)


def _submatrix(K: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """K[rows][:, columns] in float64."""
    return K.index_select(0, rows).index_select(1, columns).to(F64)


def _fit(state: _State, support: Tensor) -> tuple[Tensor, Tensor, float]:
    """H_SS⁻¹ (via Cholesky), w_S = H_SS⁻¹c_S and f on `support`."""
    c, constant = state.c, state.constant
    if support.numel() == 0:
        empty = torch.zeros(0, 0, dtype=F64, device=c.device)
        return empty, torch.zeros(0, dtype=F64, device=c.device), constant
    H_SS = _submatrix(state.K, support, support)
    H_SS.diagonal().add_(state.ridge)
    L, info = torch.linalg.cholesky_ex(H_SS)
    Hinv = torch.cholesky_inverse(L) if int(info) == 0 else torch.linalg.inv(H_SS)
    c_S = c.index_select(0, support)
    w = Hinv @ c_S
    return Hinv, w, constant - 0.5 * float(c_S @ w)


def _score(state: _State, Hinv: Tensor) -> None:
    """The block's cheapest removal, best addition and best exchange at its current fit."""
    p = state.c.numel()
    in_support = torch.zeros(p, dtype=torch.bool, device=state.c.device)
    in_support[state.support] = True
    outside = torch.nonzero(~in_support & state.eligible).flatten()
    k = state.support.numel()
    state.remove_cost, state.remove_at = float("inf"), -1
    state.add_gain, state.add_at = NEG_INF, -1
    state.pair_change, state.pair = float("inf"), (-1, -1)
    if k:
        d = Hinv.diagonal()
        cost = state.w * state.w / (2 * d)
        position = int(torch.argmin(cost))
        state.remove_cost, state.remove_at = float(cost[position]), position
    if not outside.numel():
        return
    H_CS = _submatrix(state.K, outside, state.support)  # off the diagonal: K's entries are H's
    u = state.c.index_select(0, outside) - H_CS @ state.w
    s = state.diagonal.index_select(0, outside)
    if k:
        Z = Hinv @ H_CS.T  # (k, m)
        s = s - (H_CS.T * Z).sum(dim=0)
    s = s.clamp_min(torch.finfo(F64).tiny)
    gain = u * u / (2 * s)
    best = int(torch.argmax(gain))
    state.add_gain, state.add_at = float(gain[best]), int(outside[best])
    if k:
        w_new = state.w[:, None] - Z * (u / s)[None, :]
        d_new = Hinv.diagonal()[:, None] + Z * Z / s[None, :]
        change = w_new * w_new / (2 * d_new) - gain[None, :]
        flat = int(torch.argmin(change))
        i, j = divmod(flat, change.shape[1])
        state.pair_change, state.pair = float(change[i, j]), (i, int(outside[j]))


def _refresh(state: _State, support: Tensor) -> float:
    """Refit the block on `support` and rescore it; returns the change of its objective."""
    Hinv, w, f = _fit(state, support)
    change = f - state.f
    state.support, state.w, state.f = support, w, f
    _score(state, Hinv)
    return change


@dataclass
class BlockSwapResult:
    w: Tensor  # (p,) the solution
    objective: float  # Σ block objectives
    swaps: int
    converged: bool
    stopped_by: str


def block_swap_search(
    grams: Sequence[Tensor],
    blocks: Sequence[tuple[int, int]],
    w_bar: Tensor,
    keep: Tensor,
    ridge: float,
    eligible: Tensor | None = None,
    max_swaps: int = 100_000,
    time_budget_s: float | None = None,
    tol: float = 1e-10,
) -> BlockSwapResult:
    """Minimise Σ_b f_b over supports of |keep| weights in all (see the module doc), starting from
    `keep` (a boolean mask over the p coordinates, e.g. the block backsolve's support).

    `grams[t]` is K_b = G_bᵀG_b of `blocks[t]` (any float dtype, kept as it is: the submatrices each
    refit and score reads are taken in float64); `ridge` is ρ = n·λ
    (> 0). Coordinates outside `eligible` (dead columns, frozen weights) never enter the support.
    Stops when no move lowers f by more than tol·max(|f|, 1), after `max_swaps` moves, or after
    `time_budget_s` seconds when one is given.
    """
    if ridge <= 0:
        raise ValueError(f"block_swap_search needs a positive ridge, got {ridge}")
    started = time.perf_counter()
    device = w_bar.device
    eligible = torch.ones_like(keep) if eligible is None else eligible.to(device)
    states = []
    for K, (b0, b1) in zip(grams, blocks):
        w_b = w_bar[b0:b1].to(F64)
        c = K.to(F64) @ w_b + ridge * w_b  # the float64 copy of K lives only for this product
        constant = 0.5 * float(w_b @ c)
        support = torch.nonzero(keep[b0:b1]).flatten()
        diagonal = K.diagonal().to(F64) + ridge
        allowed = eligible[b0:b1] | keep[b0:b1]
        state = _State(b0, K, ridge, diagonal, c, allowed, constant, support, torch.zeros(0, dtype=F64), constant)
        _refresh(state, support)
        states.append(state)
    total = sum(s.f for s in states)
    swaps, stop = 0, STOP_CONVERGED
    while True:
        if swaps >= max_swaps:
            stop = STOP_WORK
            break
        if time_budget_s is not None and time.perf_counter() - started >= time_budget_s:
            stop = STOP_TIME
            break
        inside = min(range(len(states)), key=lambda b: states[b].pair_change)
        by_cost = sorted(range(len(states)), key=lambda b: states[b].remove_cost)[:2]
        by_gain = sorted(range(len(states)), key=lambda b: -states[b].add_gain)[:2]
        across = min(
            ((a, b) for a in by_cost for b in by_gain if a != b),
            key=lambda ab: states[ab[0]].remove_cost - states[ab[1]].add_gain,
            default=None,
        )
        change_inside = states[inside].pair_change
        change_across = float("inf") if across is None else states[across[0]].remove_cost - states[across[1]].add_gain
        if not min(change_inside, change_across) < -tol * max(abs(total), 1.0):
            break
        moves: dict[int, Tensor] = {}
        if change_inside <= change_across:
            position, entering = states[inside].pair
            support = states[inside].support.clone()
            support[position] = entering
            moves[inside] = support.sort().values
        else:
            assert across is not None
            a, b = across
            kept = torch.ones(states[a].support.numel(), dtype=torch.bool, device=device)
            kept[states[a].remove_at] = False
            moves[a] = states[a].support[kept]
            entering_index = torch.tensor([states[b].add_at], device=device)
            moves[b] = torch.cat([states[b].support, entering_index]).sort().values
        before = {b: states[b].support for b in moves}
        change = sum(_refresh(states[b], support) for b, support in moves.items())
        if not change < 0:  # rounding: the predicted gain was not real; undo and stop
            for b, support in before.items():
                _refresh(states[b], support)
            break
        total += change
        swaps += 1
    w = torch.zeros(w_bar.numel(), dtype=F64, device=device)
    for state in states:
        w[state.start + state.support] = state.w
    objective = sum(s.f for s in states)
    return BlockSwapResult(w=w, objective=objective, swaps=swaps, converged=stop == STOP_CONVERGED, stopped_by=stop)


class BlockSwap:
    """The block method's support search (`pruner=chita_block pruner/search=swap`): from the
    block backsolve, moves within and between blocks while the exact block-diagonal objective
    drops, until no move helps or after `max_swaps` moves per ridge λ and memory group;
    `time_budget_s` (seconds, default none) is an opt-in that makes the result depend on the
    machine's speed. Blocks are held one memory group at a time (see `block_backsolve_path`)."""

    def __init__(self, max_swaps: int = 5000, time_budget_s: float | None = None):
        self.max_swaps = check_int("max_swaps", max_swaps, 0)
        self.time_budget_s = None if time_budget_s is None else check_number("time_budget_s", time_budget_s, 0, False)

    def settings(self) -> dict:
        return {"name": "swap", **vars(self)}

    def searcher(self, w_bar: Tensor, frozen: Tensor | None) -> BlockSearch:
        """The search around w̄, never bringing back `frozen` weights."""

        def search(
            grams: list[Tensor], blocks: Sequence[tuple[int, int]], keep: Tensor, ridge: float, dead: Tensor | None
        ) -> tuple[Tensor, float, int, str]:
            eligible = torch.ones_like(keep)
            for excluded in (dead, frozen):
                if excluded is not None:
                    eligible &= ~excluded.to(keep.device)
            result = block_swap_search(grams, blocks, w_bar, keep, ridge, eligible, self.max_swaps, self.time_budget_s)
            return result.w, result.objective, result.swaps, result.stopped_by

        return search
