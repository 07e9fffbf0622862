"""Independent references for the sparsity patterns: N:M group counts from the weight's layout,
and the best allowed support by enumerating every mask of a tiny vector."""

from __future__ import annotations

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


def best_mask_energy(v: Tensor, allowed) -> float:
    """max Σ_{i in S} v_i² over every mask S of len(v) coordinates that `allowed(mask)` accepts."""
    best = 0.0
    for bits in itertools.product((False, True), repeat=v.numel()):
        mask = torch.tensor(bits)
        if allowed(mask):
            best = max(best, float((v[mask] ** 2).sum()))
    return best
