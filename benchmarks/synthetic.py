"""Synthetic pruning problems: Gaussian gradients with layer-like column scales and
heavy-tailed weights, stored column-major like `chitalab.fisher.collect_gradients` stores G."""

from __future__ import annotations

import torch
from torch import Tensor

from chitalab.solver import Problem

DRAW_ELEMENTS = 1 << 20  # entries drawn per generator call (4 MiB in float32): temporaries stay small


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def synthetic_columns(n: int, start: int, stop: int, seed: int, device: torch.device, dtype=torch.float32) -> Tensor:
    """Columns [start, stop) of a synthetic G (n x p), the same whatever range is asked: column
    j is N(0, s_j²) with s_j = exp(z_j / 2), drawn in chunks of DRAW_ELEMENTS // n columns,
    each from a generator seeded by (seed, chunk)."""
    width = max(1, DRAW_ELEMENTS // n)
    Gt = torch.empty(stop - start, n, dtype=dtype, device=device)
    for chunk in range(start // width, (stop - 1) // width + 1):
        offset = chunk * width
        lo, hi = max(start, offset), min(stop, offset + width)
        gen = _generator(device, seed * 1_000_003 + chunk)
        block = torch.randn(width, n, generator=gen, dtype=dtype, device=device)
        scale = torch.exp(0.5 * torch.randn(width, 1, generator=gen, dtype=dtype, device=device))
        Gt[lo - start : hi - start] = block[lo - offset : hi - offset] * scale[lo - offset : hi - offset]
    return Gt.T


def synthetic_weights(p: int, seed: int, device: torch.device, dtype=torch.float32) -> Tensor:
    """Heavy-tailed dense weights w̄ (cubes of standard normals)."""
    return torch.randn(p, generator=_generator(device, seed), dtype=dtype, device=device) ** 3


def synthetic_problem(n: int, p: int, l2: float, seed: int, device: torch.device, dtype=torch.float32) -> Problem:
    """A Problem with synthetic G (n x p, column-major) and w̄."""
    G = synthetic_columns(n, 0, p, seed, device, dtype)
    return Problem.from_gradients(G, synthetic_weights(p, seed + 1, device, dtype), l2)
