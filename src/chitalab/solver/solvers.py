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
from .result import STOP_TIME, SolveResult
from .swap import swap_path, swap_search

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
        solver that can share work between the ridges overrides (the block method
        shares each block's Gram matrix in `block_backsolve_path`, `Swap` the factor of its start)."""
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
    exchange one kept and one pruned weight while the refitted objective drops, until no exchange
    helps or after `max_swaps` exchanges per λ; `time_budget_s` (seconds per λ, default none) is an
    opt-in that makes the result depend on the machine's speed. It exchanges single weights, so it
    serves the unstructured (global top-k) pattern; under any other pattern the `fallback` solver
    (default: the active set) solves instead, and the log says so."""

    name: ClassVar[str] = "swap"
    variant: ClassVar[str | None] = "swap"

    def __init__(
        self,
        max_swaps: int = 10_000,
        time_budget_s: float | None = None,
        fallback: Solver | None = None,
    ):
        self.max_swaps = check_int("max_swaps", max_swaps, 0)
        self.time_budget_s = None if time_budget_s is None else check_number("time_budget_s", time_budget_s, 0, False)
        self.fallback = fallback or ActiveSet()

    def settings(self) -> dict:
        return {
            "name": self.name,
            "max_swaps": self.max_swaps,
            "time_budget_s": self.time_budget_s,
            "fallback": self.fallback.settings(),
        }

    def _falls_back(self, constraint: SparsityConstraint) -> bool:
        if isinstance(constraint, GlobalTopK):
            return False
        log.info(
            "swap search: %s's pattern needs group-wise exchanges; solving with the fallback, %s",
            type(constraint).__name__,
            self.fallback.name,
        )
        return True

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        """From the backsolve point, so the result is never above it."""
        if self._falls_back(constraint):
            return self.fallback.solve(problem, k, constraint)
        return _logged(problem, swap_search(problem, k, max_swaps=self.max_swaps, time_budget_s=self.time_budget_s))

    def solve_path(self, problems: Sequence[Problem], k: int, constraint: SparsityConstraint) -> list[SolveResult]:
        """Every λ from the backsolve point too (warm starts from the previous λ's support were
        faster but ended in worse supports: see docs/reports/search_mlpnet), sharing the
        λ-independent factorisation of that start (`swap_path`) when the problems differ only in
        their ridge."""
        if self._falls_back(constraint):
            return self.fallback.solve_path(problems, k, constraint)
        first = problems[0]
        if any(p.G is not first.G or p.w_bar is not first.w_bar or p.a is not first.a for p in problems[1:]):
            return super().solve_path(problems, k, constraint)
        results = swap_path(problems, k, max_swaps=self.max_swaps, time_budget_s=self.time_budget_s)
        return [_logged(problem, result) for problem, result in zip(problems, results)]


def _logged(problem: Problem, result: SolveResult) -> SolveResult:
    """The result, its stop reason logged (a time budget makes the result machine-dependent)."""
    level = logging.WARNING if result.stopped_by == STOP_TIME else logging.INFO
    log.log(
        level,
        "swap search at l2 %g: %d swaps, stopped by %s",
        problem.ridge / problem.n,
        result.iterations,
        result.stopped_by,
    )
    return result
