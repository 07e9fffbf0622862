"""Refinements of a solution on its own support."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import check_choice, check_int
from .backsolve import fit_on_support
from .problem import Problem

POLISH_METHODS = ("none", "cd", "backsolve")


def coordinate_descent(problem: Problem, w: Tensor, sweeps: int = 1) -> Tensor:
    """Cyclic exact coordinate minimisation over the nonzeros of w (the support is kept).

    Each update costs O(n); a sweep is a Python loop over the support, so this is meant
    for polishing, not for large supports.
    """
    support = torch.nonzero(w).flatten()
    w = w.clone()
    r = problem.residual(w, support)
    columns = problem.columns(support).T.contiguous()  # |S| x n, rows contiguous
    curvature = (columns * columns).sum(dim=1) + problem.ridge
    for _ in range(sweeps):
        for row, j in enumerate(support.tolist()):
            g_j = -(columns[row] @ r) + problem.ridge * (w[j] - problem.w_bar[j])
            if problem.a is not None:
                g_j = g_j + problem.a[j]
            delta = -g_j / curvature[row]
            w[j] += delta
            r -= delta * columns[row]
    return w


class Polish:
    """Refines a solution on its own support: `none`, `cd` (`sweeps` of coordinate descent) or
    the exact `backsolve`."""

    def __init__(self, method: str = "none", sweeps: int = 1):
        self.method = check_choice("method", method, POLISH_METHODS)
        self.sweeps = check_int("sweeps", sweeps, 1)

    def __call__(self, problem: Problem, w: Tensor) -> Tensor:
        if self.method == "cd":
            return coordinate_descent(problem, w, self.sweeps)
        if self.method == "backsolve":
            return fit_on_support(problem, torch.nonzero(w).flatten())
        return w

    def settings(self) -> dict:
        return {"method": self.method, "sweeps": self.sweeps}
