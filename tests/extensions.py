"""A sparsity constraint and a solver defined outside `src/`, to show that the seams carry
them: the unit tests use them directly, the CLI tests through Hydra (tests/conf/)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor

from chitalab.solver import Problem, Solver, SolveResult, SparsityConstraint


class PerTensorTopK(SparsityConstraint):
    """Each pruned tensor keeps its share of k, ⌊k · size / p⌋, of its own largest |v|."""

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.sizes = [prod(s) for s in shapes]
        self.total = sum(self.sizes)
        self.owner = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.tensor(self.sizes))

    def budgets(self, k: int) -> list[int]:
        return [k * size // self.total for size in self.sizes]

    def support_mask(self, v: Tensor, k: int) -> Tensor:
        mask = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
        owner = self.owner.to(v.device)
        for tensor, budget in enumerate(self.budgets(k)):
            index = torch.nonzero(owner == tensor).flatten()
            if budget and index.numel():
                top = torch.topk(v.index_select(0, index).abs(), min(budget, index.numel())).indices
                mask[index[top]] = True
        return mask

    def restrict(self, index: Tensor) -> SparsityConstraint:
        """The budgets stay those of the full tensors; only the coordinates are a subset."""
        view = copy.copy(self)
        view.owner = self.owner[index.cpu()]
        return view


class ProjectedGradient(Solver):
    """Plain projected gradient descent with the 1/L step, from the projection of w̄."""

    name = "projected_gradient"
    variant = "projected gradient"

    def __init__(self, iterations: int = 50):
        self.iterations = iterations

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        step = 1.0 / problem.lipschitz()
        w, _ = constraint.project(problem.w_bar, k)
        f = problem.objective(w)
        history = [f]
        for _ in range(self.iterations):
            candidate, _ = constraint.project(w - step * problem.gradient(w), k)
            f_candidate = problem.objective(candidate)
            if not f_candidate < f:
                break
            w, f = candidate, f_candidate
            history.append(f)
        return SolveResult(w=w, objective=f, iterations=len(history) - 1, history=history, converged=True)


class Diverging(Solver):
    """A solver whose result is NaN where it keeps weights: what a diverged solver returns."""

    name = "diverging"
    variant = "diverging"

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        w, _ = constraint.project(problem.w_bar, k)
        w = torch.where(w != 0, torch.full_like(w, float("nan")), w)
        return SolveResult(w=w, objective=float("nan"), iterations=0, converged=False)


class Broken(Solver):
    """A solver with a bug (it indexes past its input): what a defect in the suite's own code does."""

    name = "broken"
    variant = "broken"

    def solve(self, problem: Problem, k: int, constraint: SparsityConstraint) -> SolveResult:
        return [][k]
