"""Block-diagonal CHITA-BSO: the paper's approximation for large networks.

The weights are cut into blocks (one per layer, large layers in chunks of about
`block_size` made of whole output channels); the Hessian approximation GᵀG is taken
block-diagonal. The support is the global top-k of |w̄| (one threshold for all blocks), and
each block gets the exact ridge fit on its kept coordinates using only its own columns of G
(with y_b = G_b w̄_b), so blocks are solved independently and G is only ever needed one
group of blocks at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support
from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .problem import Problem
from .result import SolveResult

ColumnSource = Callable[[int, int], Tensor]


def layer_blocks(shapes: Sequence[Sequence[int]], block_size: int) -> list[tuple[int, int]]:
    """[start, stop) blocks of the flat vector of weight tensors with `shapes`.

    A block never mixes tensors, and never splits an output channel (a row: the weights
    feeding one output unit, which the Fisher couples most strongly) unless that row alone
    reaches 2·block_size. A tensor of s weights in rows of q < block_size is cut, at row
    boundaries, into ⌊s / block_size⌋ (at least 1) nearly equal blocks; rows of q ≥
    block_size are cut each into ⌊q / block_size⌋ nearly equal chunks.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    blocks: list[tuple[int, int]] = []
    offset = 0
    for shape in shapes:
        rows = shape[0] if len(shape) else 1
        size = math.prod(shape)
        row = size // rows
        if row >= block_size:
            chunks = row // block_size
            bounds = [r * row + (j * row) // chunks for r in range(rows) for j in range(chunks)] + [size]
        else:
            count = min(rows, max(1, size // block_size))
            bounds = [((j * rows) // count) * row for j in range(count + 1)]
        blocks.extend((offset + a, offset + b) for a, b in zip(bounds[:-1], bounds[1:]))
        offset += size
    return blocks


def block_workspace_bytes(n: int, blocks: Sequence[tuple[int, int]], dtype: torch.dtype) -> int:
    """Memory one block solve needs besides G: G_b, G_S and y-sized vectors, and a Gram or
    Woodbury matrix, for the largest block."""
    largest = max(stop - start for start, stop in blocks)
    return dtype.itemsize * (3 * n * largest + min(n, largest) ** 2)


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run CPU work on one thread: block solves are too small for intra-op parallelism, whose
    thread hand-offs cost far more than they save (by 10-50x when the cores are shared)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class BlockSolveResult(SolveResult):
    """A block solution; objectives are those of the block-diagonal model."""

    objective_magnitude: float = 0.0  # w̄ on the same support, for comparison
    num_blocks: int = 0
    num_groups: int = 0

    @classmethod
    def exact(
        cls, w: Tensor, objective: float, objective_magnitude: float, num_blocks: int, num_groups: int
    ) -> BlockSolveResult:
        """The result of a one-pass block method (every block solved exactly, once)."""
        return cls(
            w=w,
            objective=objective,
            iterations=1,
            history=[objective],
            converged=True,
            objective_magnitude=objective_magnitude,
            num_blocks=num_blocks,
            num_groups=num_groups,
        )

    def stats(self) -> dict:
        return {
            **super().stats(),
            "objective_magnitude": self.objective_magnitude,
            "blocks": self.num_blocks,
            "groups": self.num_groups,
        }


def _solve_blocks(
    G: Tensor, offset: int, blocks: Sequence[tuple[int, int]], w_bar: Tensor, keep: Tensor, l2: float, w: Tensor
) -> tuple[float, float]:
    """Solve `blocks`, whose columns of G start at `offset`, into w; returns the sums of their
    objectives at the solution and at w̄ on the same support. G is referenced only here, so
    it is freed when the group is done."""
    objective = objective_magnitude = 0.0
    with _one_thread(w.device):
        for b0, b1 in blocks:
            problem = Problem.from_gradients(G[:, b0 - offset : b1 - offset].to(w.dtype), w_bar[b0:b1].to(w.dtype), l2)
            support = torch.nonzero(keep[b0:b1]).flatten()
            w[b0:b1] = fit_on_support(problem, support) if support.numel() else 0.0
            objective += problem.objective(w[b0:b1])
            objective_magnitude += problem.objective(problem.w_bar * keep[b0:b1])
    return objective, objective_magnitude


def group_columns(
    gradients: Tensor | ColumnSource, groups: Sequence[tuple[int, int]], blocks: Sequence[tuple[int, int]]
) -> Iterator[tuple[Tensor, int, Sequence[tuple[int, int]]]]:
    """For each group (a column range of whole blocks) in turn: G's columns of the group, where
    they start, and the group's blocks. `gradients` is G or a callable giving columns [start, stop)."""
    columns = gradients if callable(gradients) else (lambda start, stop: gradients[:, start:stop])
    first = 0
    for start, stop in groups:
        if first < len(blocks) and blocks[first][0] != start:
            raise ValueError(f"block {blocks[first]} straddles the group boundary at {start}")
        last = first
        while last < len(blocks) and blocks[last][1] <= stop:
            last += 1
        yield columns(start, stop), start, blocks[first:last]
        first = last
    if first < len(blocks):
        raise ValueError(f"the groups end before block {blocks[first]}")


def block_backsolve(
    w_bar: Tensor,
    k: int,
    blocks: Sequence[tuple[int, int]],
    gradients: Tensor | ColumnSource,
    l2: float,
    groups: Sequence[tuple[int, int]] | None = None,
    dtype: torch.dtype = torch.float32,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
) -> BlockSolveResult:
    """Keep the allowed support of w̄ (the k largest |w̄| by default) and refit each block's kept weights exactly (see the module doc).

    `gradients` is G (n x p) or a callable giving G's columns [start, stop); it is called
    once per group in `groups` (consecutive column ranges made of whole blocks; one group by
    default), and each group's columns are freed before the next group's are fetched, so G
    never needs to be held whole. Blocks are solved in `dtype` whatever the storage dtype of G.
    """
    p = w_bar.numel()
    groups = list(groups) if groups is not None else [(0, p)]
    keep = constraint.support_mask(w_bar, k)
    w = torch.zeros(p, dtype=dtype, device=w_bar.device)
    objective = objective_magnitude = 0.0
    for G, offset, group in group_columns(gradients, groups, blocks):
        f, f_magnitude = _solve_blocks(G, offset, group, w_bar, keep, l2, w)
        del G  # free this group's columns before the next group's are computed
        objective += f
        objective_magnitude += f_magnitude
    return BlockSolveResult.exact(w, objective, objective_magnitude, len(blocks), len(groups))
