"""The solver protocol: one class per solver, each configured by its own YAML file under
conf/pruner/solver/ and called as `solve(problem, k, constraint)`.

A new solver is a subclass plus a YAML file with its `_target_`; pruners never dispatch on a
solver's name.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from ..errors import check_choice, check_int, check_number
from .active_set import active_set_iht
from .backsolve import backsolve
from .constraint import GlobalTopK, SparsityConstraint
from .iht import INITS, iht
from .problem import Problem
from .result import SolveResult
from .swap import swap_search

log = logging.getLogger(__name__)


class Solver(ABC):
    """Chooses an allowed support of at most k weights and their values for a `Problem`."""

    name: ClassVar[str]
    variant: ClassVar[str | None] = None
    """How reports name the method CHITA with this solver: "CHITA (variant)"; None for the
    paper's own CHITA (the active set), named plainly."""

    @abstractmethod
    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        """Minimise the problem's objective over the supports `constraint` allows."""

    def solve_path(self, problems: Sequence[Problem], k: int, constraint: SparsityConstraint) -> list[SolveResult]:
        """`solve` for each of `problems` (one G under a grid of ridges, in order): the seam a
        solver that can share work between the ridges overrides (none does yet; the block method
        shares each block's Gram matrix in `block_backsolve_path`)."""
        return [self.solve(problem, k, constraint) for problem in problems]

    def settings(self) -> dict:
        """The solver's configuration, as recorded in results.json."""
        return {"name": self.name, **vars(self)}


class Backsolve(Solver):
    """CHITA-BSO: the allowed support of w̄, then the exact ridge fit on it."""

    name: ClassVar[str] = "backsolve"
    variant: ClassVar[str | None] = "backsolve"

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        return backsolve(problem, k, constraint=constraint)


class IHT(Solver):
    """Iterative hard thresholding with the paper's step (see `chitalab.solver.iht`)."""

    name: ClassVar[str] = "iht"
    variant: ClassVar[str | None] = "iht"

    def __init__(self, init: str = "backsolve", iterations: int = 100, tol: float = 1e-7, refit: bool = False):
        self.init = check_choice("init", init, INITS)
        self.iterations = check_int("iterations", iterations, 0)
        self.tol = check_number("tol", tol, 0)
        self.refit = bool(refit)

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        return iht(
            problem, k, init=self.init, max_iter=self.iterations, tol=self.tol, refit=self.refit, constraint=constraint
        )


class ActiveSet(IHT):
    """CHITA-CD: IHT on an active set that grows while the objective improves
    (see `chitalab.solver.active_set`)."""

    name: ClassVar[str] = "active_set"
    variant: ClassVar[str | None] = None

    def __init__(
        self,
        init: str = "backsolve",
        iterations: int = 100,
        tol: float = 1e-7,
        refit: bool = False,
        expand: float = 1.5,
    ):
        super().__init__(init, iterations, tol, refit)
        self.expand = check_number("expand", expand, 1)

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        return active_set_iht(
            problem,
            k,
            init=self.init,
            max_iter=self.iterations,
            expand=self.expand,
            tol=self.tol,
            refit=self.refit,
            constraint=constraint,
        )


class Swap(Solver):
    """Support search with exact refits (see `chitalab.solver.swap`): from the backsolve point,
    exchange one kept and one pruned weight while the refitted objective drops, within
    `time_budget_s` seconds (null: no limit) and `max_swaps` exchanges. It exchanges single
    weights, so it serves the unstructured (global top-k) pattern; under any other pattern the
    `fallback` solver (default: the active set) solves instead, and the log says so."""

    name: ClassVar[str] = "swap"
    variant: ClassVar[str | None] = "swap"

    def __init__(self, time_budget_s: float | None = 20.0, max_swaps: int = 10_000, fallback: Solver | None = None):
        self.time_budget_s = None if time_budget_s is None else check_number("time_budget_s", time_budget_s, 0, False)
        self.max_swaps = check_int("max_swaps", max_swaps, 0)
        self.fallback = fallback or ActiveSet()

    def settings(self) -> dict:
        return {
            "name": self.name,
            "time_budget_s": self.time_budget_s,
            "max_swaps": self.max_swaps,
            "fallback": self.fallback.settings(),
        }

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        """From the backsolve point, so the result is never above it. Under a grid of ridges every
        λ starts there too: warm starts from the previous λ's support were faster but ended in
        worse supports (MLPNet at 0.98, seeds 0 and 1: 46.4 and 46.3% against 60.5 and 53.0%)."""
        if not isinstance(constraint, GlobalTopK):
            log.info(
                "swap search: %s's pattern needs group-wise exchanges; solving with the fallback, %s",
                type(constraint).__name__,
                self.fallback.name,
            )
            return self.fallback.solve(problem, k, constraint)
        start = backsolve(problem, k, constraint=constraint).w
        return swap_search(problem, k, w0=start, max_swaps=self.max_swaps, time_budget_s=self.time_budget_s)
