"""Independent references for the sparsity patterns: N:M group counts from the weight's layout,
and the best allowed support by enumerating every mask of a tiny vector."""

from __future__ import annotations

import functools
import itertools

import torch
from torch import Tensor


def nm_group_counts(weight: Tensor, m: int) -> Tensor:
    """Nonzeros in every group of m consecutive input channels of `weight` ([out, in, *kernel]),
    at each output unit and kernel position, the input dimension zero-padded to a multiple of m
    (NVIDIA's layout): one count per group."""
    w = weight.detach().reshape(weight.shape[0], weight.shape[1], -1).permute(0, 2, 1)  # [out, kernel, in]
    pad = -weight.shape[1] % m
    w = torch.nn.functional.pad(w, (0, pad))
    return (w != 0).reshape(-1, m).sum(dim=1)


def is_n_m(weight: Tensor, n: int, m: int) -> bool:
    """Whether every group of m (see `nm_group_counts`) has at most n nonzeros."""
    return bool((nm_group_counts(weight, m) <= n).all())


@functools.cache
def every_mask(p: int) -> Tensor:
    """All 2^p masks of p coordinates, one per row."""
    return torch.tensor(list(itertools.product((False, True), repeat=p)))


def best_mask_energy(v: Tensor, allowed) -> float:
    """max Σ_{i in S} v_i² over every mask S of len(v) coordinates that `allowed(mask)` accepts (0
    when it accepts none). Still every mask, but asked in order of falling energy: the first one
    accepted is the best, so `allowed` is seldom called for most of the 2^p."""
    masks = every_mask(v.numel())
    energies = masks.to(v.dtype) @ v.detach() ** 2
    for row in torch.argsort(energies, descending=True, stable=True).tolist():
        if allowed(masks[row]):
            return float((v[masks[row]] ** 2).sum())
    return 0.0
