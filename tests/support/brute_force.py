"""Small pruning problems and their exact optimum by enumerating every support."""

from __future__ import annotations

import itertools

import torch

from chitalab.solver import Problem

P, K = 14, 4
INSTANCES = [(seed, n) for seed in range(12) for n in (10, 40)]


def make_problem(
    seed: int, n: int = 40, l2: float = 1e-2, dtype=torch.float64, first_order: bool = False, p: int = P
) -> Problem:
    """A pruning-like instance: columns of different scales (layers), heavy-tailed weights."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(0.5 * torch.randn(p, generator=gen, dtype=torch.float64))
    G = torch.randn(n, p, generator=gen, dtype=torch.float64) * scale
    w_bar = torch.randn(p, generator=gen, dtype=torch.float64) ** 3
    a = G.sum(dim=0) if first_order else None
    return Problem.from_gradients(G.to(dtype), w_bar.to(dtype), l2, a)


def naive_objective(pr: Problem, w: torch.Tensor) -> float:
    """f(w) written out from the definition, independent of Problem.objective."""
    G, w_bar = pr.G.double(), pr.w_bar.double()
    w = w.double()
    value = 0.5 * torch.sum((G @ w_bar - G @ w) ** 2) + 0.5 * pr.ridge * torch.sum((w - w_bar) ** 2)
    if pr.a is not None:
        value += pr.a.double() @ (w - w_bar)
    return float(value)


def brute_force(pr: Problem, k: int, eligible: list[int] | None = None) -> tuple[float, torch.Tensor]:
    """Best objective over every support of size k (drawn from `eligible`, default all coordinates),
    each solved with the dense p x p Hessian."""
    G, w_bar = pr.G.double(), pr.w_bar.double()
    H = G.T @ G + pr.ridge * torch.eye(pr.p, dtype=torch.float64)
    b = H @ w_bar - (pr.a.double() if pr.a is not None else 0)
    best, best_w = float("inf"), None
    for support in itertools.combinations(range(pr.p) if eligible is None else eligible, k):
        S = torch.tensor(support)
        w = torch.zeros(pr.p, dtype=torch.float64)
        w[S] = torch.linalg.solve(H[S][:, S], b[S])
        f = naive_objective(pr, w)
        if f < best:
            best, best_w = f, w
    return best, best_w


def reaches(value: float, optimum: float) -> bool:
    return value <= optimum + 1e-8 * max(1.0, abs(optimum))
