"""How much memory the Fisher gradients may take, and how to split G's columns into groups
that fit (each group's gradients are computed, used and freed before the next)."""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch

from ..errors import UserError

GIB = 1024**3
FREE_FRACTION = 0.5  # of the free memory, when no cap is given: the rest is left for the model and data
IN_FLIGHT_SHARE = 8  # one chunk of gradients in flight may take at most 1/8 of the budget


def gib(size: int) -> str:
    """A byte count in GiB, with three significant digits."""
    return f"{size / GIB:.3g} GiB"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: CUDA's free memory, or MemAvailable on Linux hosts."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(max_memory_gb: float | None, device: torch.device) -> int:
    """Bytes the gradients may use: `max_memory_gb`, or half of the memory free on `device`."""
    if max_memory_gb is not None:
        return int(max_memory_gb * GIB)
    return int(FREE_FRACTION * available_bytes(device))


@dataclass(frozen=True)
class FisherPlan:
    """Column groups [start, stop) of G and what each costs: `stored` bytes for its gradients,
    `in_flight` bytes for one chunk of `chunk_size` gradient rows being computed (float32
    per-sample gradients of every tensor the group touches, and twice the activations:
    those autograd saves for the backward pass, and their gradients during it)."""

    n: int
    p: int
    dtype: torch.dtype
    chunk_size: int
    groups: list[tuple[int, int]]
    stored: list[int]
    in_flight: list[int]
    workspace: int
    budget: int

    @property
    def peak_bytes(self) -> int:
        return max(s + f for s, f in zip(self.stored, self.in_flight)) + self.workspace

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"Fisher memory plan: G = {self.n} x {self.p:,} gradients in {dtype_name(self.dtype)}, "
            f"{len(self.groups)} group(s) of columns, at most {gib(max(self.stored))} stored + "
            f"{gib(max(self.in_flight))} in flight (chunks of {self.chunk_size}) + "
            f"{gib(self.workspace)} solver workspace = {gib(self.peak_bytes)} of a {gib(self.budget)} budget"
        )

    def summary(self) -> dict:
        """JSON-friendly record for results.json."""
        return {
            "groups": len(self.groups),
            "chunk_size": self.chunk_size,
            "budget_gib": self.budget / GIB,
            "peak_gib": self.peak_bytes / GIB,
            "stored_gib": [b / GIB for b in self.stored],
        }


def plan_fisher(
    n: int,
    sizes: Sequence[int],
    cuts: Sequence[int],
    dtype: torch.dtype,
    chunk_size: int,
    activation_bytes: int,
    budget: int,
    workspace: int = 0,
    hint: str = "",
    column_workspace: int = 0,
) -> FisherPlan:
    """Split G (n x p, p = sum(sizes), stored in `dtype`) into as few consecutive column groups
    as fit in `budget` bytes, each group ending at one of `cuts` (sorted positions in (0, p];
    [p] asks for one group). `activation_bytes` is what autograd saves for one gradient row
    (see `fisher.activation_bytes`). Gradients are computed per tensor, so a group's in-flight
    cost counts every tensor it overlaps in full. The chunk size is lowered so that one chunk
    in flight (over all tensors) takes at most 1/IN_FLIGHT_SHARE of the budget. `workspace` bytes
    are left for the solver, plus `column_workspace` bytes per column of the group it holds (a
    search keeping each block's Gram matrix needs them for one group at a time). Raises a
    UserError, with the estimate and `hint` (the knobs to turn), when even the smallest group
    does not fit.
    """
    offsets = [0, *accumulate(sizes)]
    p = offsets[-1]
    if not cuts or cuts[-1] != p:
        raise ValueError(f"cuts must end at p={p}")
    itemsize = dtype.itemsize
    chunk = max(1, min(chunk_size, n, budget // (IN_FLIGHT_SHARE * (4 * p + 2 * activation_bytes))))

    def costs(start: int, stop: int) -> tuple[int, int]:
        first = bisect_right(offsets, start) - 1
        last = bisect_left(offsets, stop)
        touched = offsets[last] - offsets[first]
        return (n * itemsize + column_workspace) * (stop - start), chunk * (4 * touched + 2 * activation_bytes)

    def fits(start: int, stop: int) -> bool:
        return sum(costs(start, stop)) + workspace <= budget

    groups, stored, in_flight = [], [], []
    start, i = 0, 0
    while start < p:
        if not fits(start, cuts[i]):
            need = sum(costs(start, cuts[i])) + workspace
            raise UserError(
                f"the Fisher gradients need about {gib(need)} (n={n} x {cuts[i] - start} weights in "
                f"{dtype_name(dtype)}, {chunk} gradient rows in flight) but only {gib(budget)} "
                f"may be used (gradients.max_memory_gb; null means half of the free memory){hint}"
            )
        lo, hi = i, len(cuts) - 1  # the farthest cut that still fits: costs grow with the stop
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(start, cuts[mid]):
                lo = mid
            else:
                hi = mid - 1
        s, f = costs(start, cuts[lo])
        groups.append((start, cuts[lo]))
        stored.append(s)
        in_flight.append(f)
        start, i = cuts[lo], lo + 1
    return FisherPlan(n, p, dtype, chunk, groups, stored, in_flight, workspace, budget)
