"""Dead coordinates: weights whose gradient column is (numerically) zero.

Units that never fire on the Fisher samples give their weights zero gradients. The ridge then
pins such a weight at w̄ (keeping it costs nothing in the local model), so a magnitude top-k keeps
it and no solver ever drops it, although the local model knows nothing about it. The paper's
code drops these columns before solving; `solve_live` does the same for any solver: it solves the
problem restricted to live coordinates and falls back on dead ones only when fewer than k live
ones exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support
from .constraint import SparsityConstraint
from .problem import Problem
from .result import SolveResult
from .ridge import with_l2


def column_norms(G: Tensor) -> Tensor:
    """‖G[:, j]‖ for every column, read in G's own layout (one pass; no copy of G)."""
    return torch.linalg.vector_norm(G, dim=0)


def dead_columns(G: Tensor, rtol: float = 0.0) -> Tensor:
    """Boolean mask of the columns of G whose norm is at most `rtol` times the largest column norm
    (rtol = 0: exactly zero columns)."""
    return dead_by_norm(column_norms(G), rtol)


def dead_by_norm(norms: Tensor, rtol: float = 0.0) -> Tensor:
    """`dead_columns` from the column norms (for G read one group of columns at a time)."""
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    if norms.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=norms.device)
    return norms <= rtol * norms.max()


RULES = ("drop", "keep")


def live_support(constraint: SparsityConstraint, scores: Tensor, k: int, dead: Tensor | None) -> tuple[Tensor, int]:
    """The constraint's support of `scores` (a boolean mask) chosen among the live coordinates
    only, and how many dead ones it left out; all coordinates compete when `dead` is None or
    fewer than k are live (as in `solve_live`)."""
    if dead is None or not bool(dead.any()) or int((~dead).sum()) < k:
        return constraint.support_mask(scores, k), 0
    live = torch.nonzero(~dead.to(scores.device)).flatten()
    keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    keep[live] = constraint.restrict(live).support_mask(scores.index_select(0, live), k).to(keep.device)
    return keep, scores.numel() - live.numel()


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


SolveFn = Callable[[Problem, int], SolveResult]


@dataclass(frozen=True)
class LiveRestriction:
    """The problem restricted to its live coordinates, and how to lift a solution of it back."""

    problem: Problem  # over the live coordinates only
    live: Tensor  # their indices in the full problem
    offset: float  # full objective − restricted objective (the dead weights held at zero)
    p: int  # coordinates of the full problem

    def with_l2(self, full: Problem, l2: float) -> LiveRestriction:
        """The same restriction of `full` under another ridge λ (G shared, not copied)."""
        dead = torch.ones(self.p, dtype=torch.bool, device=self.live.device)
        dead[self.live] = False
        offset = held_at_zero(with_l2(full, l2), torch.nonzero(dead).flatten())
        return LiveRestriction(with_l2(self.problem, l2), self.live, offset, self.p)

    def lift(self, result: SolveResult) -> SolveResult:
        """A solution of the restricted problem as one of the full problem (dead weights zero)."""
        w = torch.zeros(self.p, dtype=result.w.dtype, device=result.w.device).index_copy_(0, self.live, result.w)
        return dataclasses.replace(
            result, w=w, objective=result.objective + self.offset, history=[h + self.offset for h in result.history]
        )


def restrict_to_live(problem: Problem, rtol: float = 0.0) -> LiveRestriction | None:
    """The restriction to the coordinates whose column is alive (see `dead_columns`), or None when
    no column is dead. The caller checks that at least k live coordinates remain (`solve_live`
    handles the case with fewer)."""
    dead = dead_columns(problem.G, rtol)
    if not bool(dead.any()):
        return None
    live = torch.nonzero(~dead).flatten()
    return LiveRestriction(
        problem.restrict(live), live, held_at_zero(problem, torch.nonzero(dead).flatten()), problem.p
    )


def solve_live(problem: Problem, k: int, solver: SolveFn, rtol: float = 0.0) -> SolveResult:
    """Run `solver` on the coordinates whose gradient column is alive (see `dead_columns`) and
    return its solution in full length; dead coordinates are pruned.

    When fewer than k coordinates are alive, all live ones are kept, the support is filled with the
    dead coordinates of largest `dead_gain`, and the support is refitted exactly on the full problem.
    The objective and history are those of the full problem (the restricted one plus the constant
    of `held_at_zero`).
    """
    restriction = restrict_to_live(problem, rtol)
    if restriction is None:
        return solver(problem, k)
    live = restriction.live
    if live.numel() < k:
        dead_index = torch.nonzero(dead_columns(problem.G, rtol)).flatten()
        fill = dead_index[torch.topk(dead_gain(problem, dead_index), k - live.numel()).indices]
        support = torch.cat([live, fill]).sort().values
        w = fit_on_support(problem, support)
        f = problem.objective(w)
        return SolveResult(w=w, objective=f, iterations=1, history=[f], converged=True)
    return restriction.lift(solver(restriction.problem, k))
