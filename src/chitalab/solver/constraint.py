"""Sparsity constraints: which supports of at most k weights a solver may choose.

Solvers never rank coordinates themselves: they ask the constraint for the projection (the
allowed support that keeps the most of |v|), for the support-changing step of the paper's line
search, and for feasibility. `GlobalTopK`, one threshold over all pruned weights, is the
paper's constraint; a new pattern (per-tensor budgets, N:M, ...) is one subclass, selected with
the `pattern` config group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from .problem import top_k_mask


class LayerLoss(Protocol):
    """The pruner's local model of the loss increase of pruning one layer alone, what the
    allocated per-layer budgets minimise (`chitalab.solver.PerLayer`; built by
    `chitalab.solver.layer_loss`, a data-free pruner passes None).

    Called with w̄ (p), the layers as [start, stop) ranges of the flat pruned weights, and
    `entry` (p, long): the supports of each layer are nested, the j-th (j < `levels`) keeping
    the layer's weights with entry ≤ j (entry = levels: never kept). Returns a float64
    len(layers) x levels tensor: at [l, j], the pruner's objective with layer l on its j-th
    support, its kept weights refitted as the pruner refits them (the exact ridge fit of each
    of its blocks), every other weight at w̄."""

    def __call__(self, w_bar: Tensor, layers: Sequence[tuple[int, int]], entry: Tensor, levels: int) -> Tensor: ...


CHANGE_STEP_DOUBLINGS = 60
CHANGE_STEP_BISECTIONS = 40


class SparsityConstraint(ABC):
    """An allowed family of supports over the flat vector of pruned weights."""

    @abstractmethod
    def support_mask(self, v: Tensor, k: int) -> Tensor:
        """Boolean mask of the allowed support of at most k coordinates that keeps the most of
        ‖v‖² (the support of the Euclidean projection of v onto the constraint set)."""

    @abstractmethod
    def restrict(self, index: Tensor) -> SparsityConstraint:
        """The same constraint seen on the coordinates `index` (ascending) only: what a solver
        uses on a problem restricted with `Problem.restrict` (active sets, frozen weights)."""

    def support(self, v: Tensor, k: int) -> Tensor:
        """Indices of `support_mask(v, k)`, ascending."""
        return torch.nonzero(self.support_mask(v, k)).flatten()

    def project(self, v: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """v with every coordinate outside its allowed support zeroed; returns (vector, support)."""
        mask = self.support_mask(v, k)
        return v.masked_fill(~mask, 0), torch.nonzero(mask).flatten()

    def is_feasible(self, w: Tensor, k: int) -> bool:
        """Whether w's nonzeros form an allowed support (its projection keeps all of them)."""
        return not bool(((w != 0) & ~self.support_mask(w, k)).any())

    def change_step(self, w: Tensor, g: Tensor, in_support: Tensor, k: int) -> float:
        """Smallest step η > 0 at which the projection of w − η·g leaves w's support
        (`in_support`); inf when no step does. Subclasses with a closed form override this;
        the default doubles, then bisects, on `support_mask` (O(p) per trial, far below the
        O(np) of a product with G)."""

        def changed(eta: float) -> bool:
            return not torch.equal(self.support_mask(w - eta * g, k), in_support)

        g_max = float(g.abs().max()) if g.numel() else 0.0
        if g_max == 0:
            return float("inf")
        high = max(float(w.abs().max()), torch.finfo(w.dtype).tiny) / g_max
        for _ in range(CHANGE_STEP_DOUBLINGS):
            if changed(high):
                break
            high *= 2
        else:
            return float("inf")
        low = 0.0
        for _ in range(CHANGE_STEP_BISECTIONS):
            middle = 0.5 * (low + high)
            if changed(middle):
                high = middle
            else:
                low = middle
        return high

    def bind(self, w_bar: Tensor, k: int, loss: LayerLoss | None) -> SparsityConstraint:
        """The constraint for pruning w̄ to k weights, given the pruner's local loss model (None:
        a data-free pruner). Patterns whose supports depend on it (allocated per-layer budgets)
        fix them here; by default the constraint itself."""
        return self

    def check_budget(self, k: int) -> None:
        """Refuse (UserError) a budget k the pattern cannot meet; the job calls it before any
        long work. By default every k is allowed."""
        return None

    def fixed_keep(self) -> int | None:
        """The number of weights the pattern itself keeps (N:M: all its slots), which then
        replaces the run's `sparsity`; None (the default) when the run's sparsity sets k."""
        return None

    def check(self, w: Tensor, k: int) -> dict:
        """What results.json records about whether w (the saved weights) obeys the constraint."""
        return {"holds": self.is_feasible(w, k), "nonzero": int((w != 0).sum()), "k": k}

    def settings(self) -> dict:
        """What results.json records about the constraint; a `label` ("2:4") marks its runs in
        the report's method names."""
        return {"name": type(self).__name__}


class GlobalTopK(SparsityConstraint):
    """The k largest |v| over all pruned weights, with one global threshold (the paper's).

    `shapes` (the pruned tensors' shapes, which the run passes to every pattern) is accepted
    for a uniform interface and not needed.
    """

    def __init__(self, shapes: Sequence[Sequence[int]] = ()):
        self.shapes = [tuple(s) for s in shapes]

    def support_mask(self, v: Tensor, k: int) -> Tensor:
        return top_k_mask(v, k)

    def restrict(self, index: Tensor) -> SparsityConstraint:
        return self

    def is_feasible(self, w: Tensor, k: int) -> bool:
        return int((w != 0).sum()) <= k

    def change_step(self, w: Tensor, g: Tensor, in_support: Tensor, k: int) -> float:
        """Closed form (`crossing_step` with one off-support maximum for all weights)."""
        off_support = g.abs().masked_fill(in_support, 0)
        off_support_max = off_support.max() if off_support.numel() else torch.zeros((), dtype=g.dtype)
        support = torch.nonzero(in_support).flatten()
        return crossing_step(w.index_select(0, support), g.index_select(0, support), off_support_max)


def crossing_step(w_S: Tensor, g_S: Tensor, off_support_max: Tensor) -> float:
    """Smallest η > 0 at which a kept weight's |w_i − η g_i| falls below η·M, M the largest |g|
    among the weights it competes with off the support (their w is zero, so they grow as η·M):
    η = |w_i| / (|g_i| + M) when w_i moves towards zero, |w_i| / (M − |g_i|) when it moves away
    more slowly than M grows; inf when no kept weight is overtaken. `off_support_max` is a
    scalar or one value per kept weight."""
    abs_g = g_S.abs()
    towards_zero = torch.sign(w_S) == torch.sign(g_S)
    rate = torch.where(towards_zero, abs_g + off_support_max, off_support_max - abs_g)
    steps = torch.where(rate > 0, w_S.abs() / rate.clamp_min(torch.finfo(w_S.dtype).tiny), torch.inf)
    return float(steps.min()) if steps.numel() else float("inf")


GLOBAL_TOP_K = GlobalTopK()
"""The default constraint of the solver functions."""
