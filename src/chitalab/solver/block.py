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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .backsolve import fit_on_support
from .constraint import GLOBAL_TOP_K, SparsityConstraint
from .dead import column_norms, dead_by_norm, live_support
from .problem import Problem
from .result import STOP_CONVERGED, STOP_TIME, STOP_WORK, SolveResult
from .ridge import ridge_path, with_l2

ColumnSource = Callable[[int, int], Tensor]
BlockSearch = Callable[
    [list[Tensor], Sequence[tuple[int, int]], Tensor, float, Tensor | None], tuple[Tensor, float, int, str]
]
"""(grams, blocks, keep, ridge, dead) -> (w, objective, moves, stopped_by): a support search over `blocks`
(one memory group's) given each one's Gram matrix G_bᵀG_b, the start support, ρ = n·λ and the
dead coordinates (or None); w is full length, zero outside the blocks, and keeps as many weights
in them as `keep` does."""
GroupColumns = tuple[Tensor, int, Sequence[tuple[int, int]]]
"""One group of `group_columns`: G's columns of the group, where they start, its blocks."""


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


def gram_bytes_per_column(blocks: Sequence[tuple[int, int]], dtype: torch.dtype) -> int:
    """Memory a block search needs per column of a memory group: each block's Gram matrix in
    `dtype` (a row per column), for the largest block."""
    largest = max(stop - start for start, stop in blocks)
    return largest * dtype.itemsize


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Run CPU work on one thread: block solves are too small for intra-op parallelism, whose
    thread hand-offs cost far more than they save, most of all on shared cores."""
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
    dead_columns_left_out: int = 0  # coordinates left out of the support for their dead gradient column

    @classmethod
    def exact(
        cls,
        w: Tensor,
        objective: float,
        objective_magnitude: float,
        num_blocks: int,
        num_groups: int,
        dead_columns_left_out: int = 0,
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
            dead_columns_left_out=dead_columns_left_out,
        )

    def stats(self) -> dict:
        return {
            **super().stats(),
            "objective_magnitude": self.objective_magnitude,
            "blocks": self.num_blocks,
            "groups": self.num_groups,
            "dead_columns_left_out": self.dead_columns_left_out,
        }


def _solve_blocks(
    G: Tensor,
    offset: int,
    blocks: Sequence[tuple[int, int]],
    w_bar: Tensor,
    keep: Tensor,
    l2s: Sequence[float],
    w: Tensor,
    grams: list[Tensor] | None = None,
) -> tuple[list[float], list[float]]:
    """Solve `blocks`, whose columns of G start at `offset`, into w (one row per λ in `l2s`);
    returns, per λ, the sums of their objectives at the solution and at w̄ on the same support.
    The support does not depend on λ, so each block's fits for all λ share one Gram matrix
    (`ridge_path`). With `grams`, each block's Gram matrix G_bᵀG_b is appended to it (for a support
    search). G is referenced only here, so it is freed when the group is done."""
    objective, objective_magnitude = [0.0] * len(l2s), [0.0] * len(l2s)
    with one_thread(w.device):
        for b0, b1 in blocks:
            base = Problem.from_gradients(G[:, b0 - offset : b1 - offset].to(w.dtype), w_bar[b0:b1].to(w.dtype), l2s[0])
            support = torch.nonzero(keep[b0:b1]).flatten()
            if grams is not None:
                grams.append(base.G.T @ base.G)
            if not support.numel():
                w[:, b0:b1] = 0.0
            elif len(l2s) == 1:
                w[0, b0:b1] = fit_on_support(base, support)
            else:
                w[:, b0:b1] = 0.0
                w[:, b0 + support] = ridge_path(base, support, l2s).to(w.dtype)
            for t, l2 in enumerate(l2s):
                problem = with_l2(base, l2)
                objective[t] += problem.objective(w[t, b0:b1])
                objective_magnitude[t] += problem.objective(problem.w_bar * keep[b0:b1])
    return objective, objective_magnitude


def group_columns(
    gradients: Tensor | ColumnSource, groups: Sequence[tuple[int, int]], blocks: Sequence[tuple[int, int]]
) -> Iterator[GroupColumns]:
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


def group_passes(
    gradients: Tensor | ColumnSource, groups: Sequence[tuple[int, int]], blocks: Sequence[tuple[int, int]], twice: bool
) -> tuple[Iterable[GroupColumns], Callable[[], Iterable[GroupColumns]]]:
    """`group_columns` for a method that may read every group twice (a first pass to decide the
    support, a second to solve): the first pass, and a function giving the second. When G is given
    whole or there is one group, or only one pass is needed (`twice` false), the groups are
    fetched once and kept for both."""
    passes: Iterable[GroupColumns] = group_columns(gradients, groups, blocks)
    if not twice or not callable(gradients) or len(groups) == 1:
        kept = list(passes)
        return kept, lambda: kept
    return passes, lambda: group_columns(gradients, groups, blocks)


def block_backsolve(
    w_bar: Tensor,
    k: int,
    blocks: Sequence[tuple[int, int]],
    gradients: Tensor | ColumnSource,
    l2: float,
    groups: Sequence[tuple[int, int]] | None = None,
    dtype: torch.dtype = torch.float32,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
    dead_rtol: float | None = None,
) -> BlockSolveResult:
    """`block_backsolve_path` for one ridge λ."""
    return block_backsolve_path(w_bar, k, blocks, gradients, [l2], groups, dtype, constraint, dead_rtol)[0]


def block_backsolve_path(
    w_bar: Tensor,
    k: int,
    blocks: Sequence[tuple[int, int]],
    gradients: Tensor | ColumnSource,
    l2s: Sequence[float],
    groups: Sequence[tuple[int, int]] | None = None,
    dtype: torch.dtype = torch.float32,
    constraint: SparsityConstraint = GLOBAL_TOP_K,
    dead_rtol: float | None = None,
    search: BlockSearch | None = None,
) -> list[BlockSolveResult]:
    """Keep the allowed support of w̄ (the k largest |w̄| by default) and refit each block's kept
    weights exactly (see the module doc), for each ridge λ in `l2s` (one result per λ, in order;
    the fits of all λ share each block's Gram matrix).

    `gradients` is G (n x p) or a callable giving G's columns [start, stop); it is called
    once per group in `groups` (consecutive column ranges made of whole blocks; one group by
    default), and each group's columns are freed before the next group's are fetched, so G
    never needs to be held whole. With `dead_rtol` (see `chitalab.solver.dead`), coordinates
    whose gradient column is dead are left out of the support unless fewer than k live ones
    exist; with more than one group that costs a first pass over G for the column norms.
    With `search` (e.g. `block_swap_search`), the backsolve is its start: each group's Gram
    matrices are kept while the group is held and the search moves the support within and
    between the group's blocks, per λ (with one group, between all blocks; with several, each
    group keeps the backsolve's share of k, so memory stays within one group's).
    Blocks are solved in `dtype` whatever the storage dtype of G.
    """
    l2s = [float(v) for v in l2s]
    p = w_bar.numel()
    groups = list(groups) if groups is not None else [(0, p)]
    first, second = group_passes(gradients, groups, blocks, dead_rtol is not None)
    dead = None
    if dead_rtol is not None:
        dead = dead_by_norm(torch.cat([column_norms(G) for G, _, _ in first]), dead_rtol)
        first = second()
    keep, left_out = live_support(constraint, w_bar, k, dead)
    w = torch.zeros(len(l2s), p, dtype=dtype, device=w_bar.device)
    objective, objective_magnitude = [0.0] * len(l2s), [0.0] * len(l2s)
    backsolved, moves = [0.0] * len(l2s), [0] * len(l2s)
    stops: list[set[str]] = [set() for _ in l2s]
    for G, offset, group in first:
        n = G.shape[0]
        grams: list[Tensor] | None = None if search is None else []
        f, f_magnitude = _solve_blocks(G, offset, group, w_bar, keep, l2s, w, grams)
        del G  # free this group's columns before the next group's are computed
        backsolved = [a + b for a, b in zip(backsolved, f)]
        objective_magnitude = [a + b for a, b in zip(objective_magnitude, f_magnitude)]
        if search is not None and grams is not None and group:
            g0, g1 = group[0][0], group[-1][1]
            for t, l2 in enumerate(l2s):
                searched, f_searched, count, stop = search(grams, group, keep, n * l2, dead if left_out else None)
                stops[t].add(stop)
                if f_searched < f[t]:
                    w[t, g0:g1], f[t] = searched[g0:g1].to(dtype), f_searched
                    moves[t] += count
        objective = [a + b for a, b in zip(objective, f)]
        del grams  # one group's Gram matrices at a time
    results = [
        BlockSolveResult.exact(w[t], objective[t], objective_magnitude[t], len(blocks), len(groups), left_out)
        for t in range(len(l2s))
    ]
    if search is not None:
        for t, result in enumerate(results):
            result.iterations, result.history = moves[t], [backsolved[t], result.objective]
            stopped = [reason for reason in (STOP_TIME, STOP_WORK) if reason in stops[t]]
            result.stopped_by = stopped[0] if stopped else STOP_CONVERGED
            result.converged = not stopped
    return results
