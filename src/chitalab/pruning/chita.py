"""CHITA: prune by solving the L0-constrained Fisher regression with any solver."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ArgumentError, check_choice, check_number
from ..fisher import HALF_DTYPES, FisherGradients, GradientSource
from ..params import keep_count
from ..solver import Polish, Problem, Solver, SolveResult, SparsityConstraint, layer_loss, restrict_to_live
from ..solver.dead import RULES as DEAD_RULES
from ..solver.ridge import with_l2
from .base import PruneContext, Pruner, PruneResult, bound_stats
from .ridge_choice import AUTO_LIMITS, L2Setting, RidgeChoice, l2_grid, l2_setting
from .step_search import StepSearch

log = logging.getLogger(__name__)


def check_feasible(ctx: PruneContext, w: torch.Tensor, k: int, who: str) -> None:
    """Refuse a result the sparsity constraint does not allow (a bug, not a user error)."""
    if not ctx.constraint.is_feasible(w, k):
        raise RuntimeError(f"{who} returned weights that {type(ctx.constraint).__name__} does not allow (k={k})")


def prepare_gradients(
    ctx: PruneContext,
    source: GradientSource,
    cuts: list[int] | None = None,
    workspace: int = 0,
    hint: str = "",
    column_workspace: int = 0,
) -> FisherGradients:
    """Draw this step's and stage's Fisher samples and plan G for them (see
    `GradientSource.prepare`); the draw counts towards the Fisher's seconds. Only the first
    stage of the first step starts from weights other jobs share (the loaded model), so only
    its G goes to the Fisher store."""
    tic = time.perf_counter()
    x, y = ctx.draw("fisher", source.samples_needed)
    drawn = time.perf_counter() - tic
    reusable = ctx.stage == 0 and ctx.step == 0
    fisher = source.prepare(
        ctx.model, ctx.pruned, ctx.loss_fn, x, y, cuts, workspace, hint, ctx.progress, reusable, column_workspace
    )
    fisher.seconds += drawn
    return fisher


@dataclass
class _Bound:
    """The problem of one pruning call and its constraint, full and restricted to the weights
    that are not frozen (`alive`; None when none is frozen)."""

    base: Problem
    bound: SparsityConstraint
    problem: Problem
    constraint: SparsityConstraint
    alive: Tensor | None


@dataclass
class _Candidate:
    """One λ's solution: the weights, the problem they solve and the solver's stats."""

    w: Tensor
    full: Problem
    stats: dict


class ChitaPruner(Pruner):
    """Single-stage CHITA, composed of a gradient source, a solver and the run's constraint.

    G comes from `gradients` (held whole); the problem is the ridge `l2` around w̄, with the
    first-order term a = Σ g_i / m when `first_order_term`; `solver` chooses the support and
    values, `polish` refines them on their support, and `step_search` (optional) damps the move
    by the loss on fresh training samples. `l2` may be a grid (a list, or "auto"): the problem is
    solved once per λ on the same G and `ridge_choice` keeps the λ whose pruned model has the
    lowest loss on held-out training samples (see `chitalab.pruning.ridge_choice`); with "auto"
    the grid is widened while that λ sits at its edge. With
    `dead_columns=drop` (the paper's code does the same) weights whose gradient column is zero
    (norm at most `dead_rtol` times the largest) are pruned unless fewer than k others exist:
    the ridge would pin them at w̄ and a top-k keep them.
    """

    name = "chita"

    def __init__(
        self,
        gradients: GradientSource,
        solver: Solver,
        l2: L2Setting = 1e-4,
        first_order_term: bool = False,
        polish: Polish | None = None,
        step_search: StepSearch | None = None,
        dead_columns: str = "drop",
        dead_rtol: float = 0.0,
        ridge_choice: RidgeChoice | None = None,
    ):
        if gradients.dtype in HALF_DTYPES:
            raise ArgumentError(
                "gradients",
                f"gradients.dtype={gradients.dtype} is not available to the chita solvers, which compute in the "
                "storage dtype; use float32 or float64, or the block method (pruner=chita_block)",
            )
        self.gradients = gradients
        self.solver = solver
        self.l2_grid = l2_grid("l2", l2)
        self.widen = isinstance(l2, str)  # "auto" (l2_grid refuses other strings)
        self.ridge_choice = ridge_choice or RidgeChoice()
        self.first_order_term = bool(first_order_term)
        self.polish = polish or Polish()
        self.step_search = step_search
        self.dead_columns = check_choice("dead_columns", dead_columns, DEAD_RULES)
        self.dead_rtol = check_number("dead_rtol", dead_rtol, 0)

    def samples_needed(self) -> int:
        return max(
            self.gradients.samples_needed,
            self.step_search.samples if self.step_search else 0,
            self.ridge_choice.samples if len(self.l2_grid) > 1 else 0,
        )

    def label(self) -> str:
        return f"CHITA ({self.solver.variant})" if self.solver.variant else "CHITA"

    def settings(self) -> dict:
        return {
            "name": self.name,
            "l2": l2_setting(self.l2_grid),
            "ridge_choice": self.ridge_choice.settings(),
            "first_order_term": self.first_order_term,
            "gradients": self.gradients.settings(),
            "solver": self.solver.settings(),
            "polish": self.polish.settings(),
            "step_search": None if self.step_search is None else self.step_search.settings(),
            "dead_columns": self.dead_columns,
            "dead_rtol": self.dead_rtol,
        }

    def _solve_path(
        self, problem: Problem, k: int, constraint: SparsityConstraint, grid: list[float]
    ) -> list[tuple[SolveResult, int]]:
        """The solver's results for `problem` under each ridge of `grid` (`Solver.solve_path`),
        with dead coordinates (zero gradient columns, see `chitalab.solver.dead`) left out of the
        support unless fewer than k live ones exist; each with the number of dead coordinates
        left out."""
        restriction = restrict_to_live(problem, self.dead_rtol) if self.dead_columns == "drop" else None
        if restriction is None or restriction.live.numel() < k:
            problems = [with_l2(problem, l2) for l2 in grid]
            return [(result, 0) for result in self.solver.solve_path(problems, k, constraint)]
        restricted = [restriction.with_l2(problem, l2) for l2 in grid]
        results = self.solver.solve_path([r.problem for r in restricted], k, constraint.restrict(restriction.live))
        dead = problem.p - restriction.live.numel()
        return [(r.lift(result), dead) for r, result in zip(restricted, results)]

    def _bind(self, ctx: PruneContext, G: Tensor, k: int) -> _Bound:
        """The problem at the grid's first λ, the constraint bound to it (once, to the local model of
        that λ) and both restricted to the weights that are not frozen."""
        w_bar = ctx.pruned.flatten()
        first_order = G.sum(dim=0) / self.gradients.mini_bsz if self.first_order_term else None
        base = Problem.from_gradients(G, w_bar.to(self.gradients.torch_dtype), self.l2_grid[0], first_order)
        bound = ctx.constraint.bind(w_bar, k, layer_loss(G, self.l2_grid[0]))  # each layer refitted as one block
        # Frozen weights stay zero: solve over the others only.
        alive = None if ctx.frozen is None else torch.nonzero(~ctx.frozen.to(w_bar.device)).flatten()
        problem = base if alive is None else base.restrict(alive)
        constraint = bound if alive is None else bound.restrict(alive)
        return _Bound(base, bound, problem, constraint, alive)

    def _candidates(self, ctx: PruneContext, b: _Bound, k: int, grid: list[float]) -> dict[float, _Candidate]:
        """The polished solution for each ridge of `grid` (weights full length, zero where frozen)."""
        candidates = {}
        for l2, (result, dead) in zip(grid, self._solve_path(b.problem, min(k, b.problem.p), b.constraint, grid)):
            full, restricted = with_l2(b.base, l2), with_l2(b.problem, l2)
            w = self.polish(restricted, result.w)
            stats = {**result.stats(), "dead_columns_left_out": dead, **bound_stats(ctx, b.bound)}
            if b.alive is not None:
                w = torch.zeros_like(full.w_bar).index_copy_(0, b.alive, w)
                # The restricted objective differs from the full one by a constant.
                offset = full.objective(torch.zeros_like(w).index_copy_(0, b.alive, result.w)) - result.objective
                stats["objective_history"] = [h + offset for h in result.history]
            candidates[l2] = _Candidate(w, full, stats)
        return candidates

    def _choose(self, ctx: PruneContext, b: _Bound, k: int) -> tuple[float, dict[float, _Candidate], dict]:
        """The grid's solutions and the λ of lowest held-out training loss among them; with
        `l2: auto`, while that λ sits at an edge of the λ tried, the grid is widened by a decade
        on that side (up to `AUTO_LIMITS`), only the new λ solved and evaluated, and the choice
        made again."""
        solved = self._candidates(ctx, b, k, self.l2_grid)
        if len(solved) == 1:
            return self.l2_grid[0], solved, {}
        w_bar = ctx.pruned.flatten()
        losses = self.ridge_choice.heldout_losses(ctx, w_bar, {value: c.w for value, c in solved.items()})
        while self.widen:
            l2 = min(losses, key=lambda value: losses[value])
            wider = l2 / 10 if l2 == min(losses) else l2 * 10 if l2 == max(losses) else None
            if wider is None or not AUTO_LIMITS[0] <= wider <= AUTO_LIMITS[1]:
                break
            log.info("l2 %g, chosen on held-out training loss, is at the edge of the grid; trying %g", l2, wider)
            new = self._candidates(ctx, b, k, [wider])
            solved.update(new)
            losses.update(self.ridge_choice.heldout_losses(ctx, w_bar, {value: c.w for value, c in new.items()}))
        l2, choice = self.ridge_choice.choose(losses)
        return l2, solved, choice

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())

        fisher = prepare_gradients(ctx, self.gradients, hint="use the block method (pruner=chita_block)")
        G = fisher.whole()

        start = time.perf_counter()
        b = self._bind(ctx, G, k)
        bound = b.bound
        l2, solved, choice = self._choose(ctx, b, k)
        chosen = solved[l2]
        ctx = dataclasses.replace(ctx, constraint=bound)
        w, stats = chosen.w, chosen.stats
        if self.step_search is not None:
            damped, search = self.step_search(ctx, w_bar, w.to(w_bar.dtype))
            w = damped.to(w.dtype)
            stats.update(search)
        check_feasible(ctx, w, k, self.label())
        objective = chosen.full.objective(w)
        solver_seconds = time.perf_counter() - start

        stats.update(
            objective=objective,
            objective_magnitude=chosen.full.objective(bound.project(chosen.full.w_bar, k)[0]),
            k=k,
            **choice,
            **fisher.summary(),
        )
        log.info(
            "%s: objective %.6g (magnitude pruning: %.6g), %d iterations, %d dead columns left out, %s%.2fs",
            self.label(),
            objective,
            stats["objective_magnitude"],
            stats["iterations"],
            stats["dead_columns_left_out"],
            f"l2 {l2:g} chosen of {len(solved)} on held-out training loss, " if choice else "",
            solver_seconds,
        )
        return PruneResult(
            weights=w.to(w_bar.dtype), fisher_seconds=fisher.seconds, solver_seconds=solver_seconds, stats=stats
        )
