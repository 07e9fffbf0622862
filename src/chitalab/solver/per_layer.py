"""Per-layer budgets: every pruned tensor ("layer") gets its own share of the k kept weights.

Modes (`pattern=per_layer pattern.mode=...`):

* `uniform`: each layer at the target density, k·size/p weights (largest remainders first, so
  the shares add up to k); the support is each layer's own top.
* `caps`: one global threshold, except that no layer's sparsity exceeds `max_layer_sparsity`
  (each layer keeps at least ⌈(1 − cap)·size⌉ weights). The projection is exact: every
  layer's top floor, then the largest of the rest up to k. A cap that leaves more than k
  floors is refused.
* `allocated`: per-layer densities chosen on the grid `densities` (by default 0.01, 0.02, ...,
  1.0) to minimise the sum of the layers' own error proxies under the budget k, by an exact
  knapsack over the grid (OBC's approach). A layer's proxy at density d is the pruner's local
  model (`LayerLoss`, built by `layer_loss`) of pruning that layer alone to its ⌊d·size⌋
  largest |w̄|, every other layer dense, **after the refit**: the CHITA objective once the kept
  weights of each of the pruner's blocks have their exact ridge fit, i.e. what the backsolve
  on that support reaches (the supports are those the projection then keeps, the layer's
  largest magnitudes). As the block-diagonal objective is a sum over blocks, the proxies of
  the chosen densities add up (`proxy_total` in `settings`) to the block backsolve's objective
  on the allocated support before the leftover weights are added, an upper bound on what it
  reaches. A data-free pruner (MP, loss None) gives the magnitude error ½‖δ‖². Weights the
  grid leaves unassigned (at most one grid step per layer, plus the knapsack's rounding) go to
  the layers in proportion to the weights each left out. The budgets are fixed when the
  pruner binds the constraint to its w̄ and budget (`bind`), once per pruning call (each
  CHITA++ stage and gradual step allocates anew).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor

from ..errors import ArgumentError, UserError, check_choice, check_fraction, check_int
from .constraint import LayerLoss, SparsityConstraint

MODES = ("uniform", "caps", "allocated")
DEFAULT_DENSITIES = tuple(round(0.01 * i, 2) for i in range(1, 101))  # 0.01, 0.02, ..., 1.0


def proportional_shares(total: int, sizes: Sequence[int]) -> list[int]:
    """min(total, Σ sizes) split in proportion to `sizes`, largest remainders first: each share
    is at most its size, and the shares add up."""
    mass = sum(sizes)
    total = min(total, mass)
    if not mass:
        return [0] * len(sizes)
    exact = [total * size / mass for size in sizes]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def allocate(errors: Tensor, costs: Tensor, budget: int) -> list[int]:
    """The choice j_l per layer (row) minimising Σ errors[l, j_l] subject to Σ costs[l, j_l] ≤
    budget (integer costs): an exact knapsack by dynamic programming over the budget, O(L·J·budget).
    Raises ValueError when even the cheapest choices exceed the budget."""
    layers, _ = errors.shape
    errors, costs = errors.double(), costs.long()
    best = torch.zeros(budget + 1, dtype=torch.float64)  # best[b]: least error of the layers so far within b
    picks = []
    for layer in range(layers):
        options = []
        for j in range(errors.shape[1]):
            c = int(costs[layer, j])
            shifted = torch.full_like(best, float("inf"))
            if c <= budget:
                shifted[c:] = best[: budget + 1 - c] + errors[layer, j]
            options.append(shifted)
        stacked = torch.stack(options)
        best, choice = stacked.min(dim=0)
        picks.append(choice)
    if not bool(torch.isfinite(best[budget])):
        raise ValueError(f"no choice fits the budget {budget}")
    chosen, b = [], budget
    for layer in reversed(range(layers)):
        j = int(picks[layer][b])
        chosen.append(j)
        b -= int(costs[layer, j])
    return chosen[::-1]


class PerLayer(SparsityConstraint):
    """Per-layer budgets (see the module): `mode` uniform, caps or allocated."""

    def __init__(
        self,
        shapes: Sequence[Sequence[int]] = (),
        mode: str = "uniform",
        max_layer_sparsity: float | None = None,
        densities: Sequence[float] | None = None,
        resolution: int = 2000,
    ):
        self.mode = check_choice("mode", mode, MODES)
        if mode == "caps" and max_layer_sparsity is None:
            raise ArgumentError(
                "max_layer_sparsity", "max_layer_sparsity=null is not allowed with mode=caps; set a cap in [0, 1)"
            )
        self.cap = None if max_layer_sparsity is None else check_fraction("max_layer_sparsity", max_layer_sparsity)
        densities = DEFAULT_DENSITIES if densities is None else densities
        grid = sorted(set(float(d) for d in densities))
        if not grid or not all(0 < d <= 1 for d in grid):
            raise ArgumentError("densities", f"densities={list(densities)!r} is not allowed; they must lie in (0, 1]")
        self.densities = grid
        self.resolution = check_int("resolution", resolution, 1)
        self.sizes = [prod(s) for s in shapes]
        self.owner = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.tensor(self.sizes, dtype=torch.long))
        self.budgets: list[int] | None = None  # fixed by `bind` (allocated)
        self.proxies_on_grid: list[list[float]] | None = None  # what the allocation minimised
        self.proxy_total: float | None = None  # the proxies of the chosen densities, summed
        self.proxy: str | None = None  # "refitted" (the pruner's loss) or "magnitude" (none given)
        self._on_device: dict[torch.device, Tensor] = {}

    # ------------------------------------------------------------------ budgets
    def floors(self) -> list[int]:
        """Weights each layer keeps at least (caps)."""
        assert self.cap is not None
        return [math.ceil((1 - self.cap) * size - 1e-9) for size in self.sizes]

    def check_budget(self, k: int) -> None:
        if self.mode == "caps" and sum(self.floors()) > k:
            raise ArgumentError(
                "max_layer_sparsity",
                f"max_layer_sparsity={self.cap} keeps at least {sum(self.floors())} weights, more than the "
                f"{k} the sparsity allows; raise max_layer_sparsity or lower sparsity",
            )

    def layer_budgets(self, k: int) -> list[int]:
        """Each layer's share of k (uniform, or the allocation once bound)."""
        if self.budgets is not None:
            return self.budgets
        return proportional_shares(k, self.sizes)

    def bind(self, w_bar: Tensor, k: int, loss: LayerLoss | None) -> SparsityConstraint:
        """Allocated: fix the per-layer budgets for pruning w̄ to k weights (see the module)."""
        if self.mode != "allocated":
            return self
        errors, costs = self.proxies(w_bar, loss)
        unit = max(1, math.ceil(sum(self.sizes) / self.resolution))
        units = torch.ceil(costs / unit).long()
        try:
            chosen = allocate(errors, units, k // unit)
        except ValueError:
            raise UserError(f"the density grid cannot keep as few as {k} weights; add smaller densities") from None
        budgets = [int(costs[layer, j]) for layer, j in enumerate(chosen)]
        extra = proportional_shares(k - sum(budgets), [s - b for s, b in zip(self.sizes, budgets)])
        view = copy.copy(self)
        view.budgets = [b + e for b, e in zip(budgets, extra)]
        view.proxies_on_grid = errors.tolist()
        view.proxy_total = float(sum(errors[layer, j] for layer, j in enumerate(chosen)))
        view.proxy = "magnitude" if loss is None else "refitted"
        return view

    def entries(self, w_bar: Tensor) -> tuple[Tensor, Tensor]:
        """The nested grid supports of every layer: entry[i] (p, long), the first grid index at
        which weight i is among its layer's ⌊d·size⌋ (at least 1) largest |w̄| (len(densities):
        never), and keeps[l, j], the weights layer l keeps at grid index j."""
        entry = torch.empty(w_bar.numel(), dtype=torch.long, device=w_bar.device)
        keeps = torch.zeros(len(self.sizes), len(self.densities), dtype=torch.long)
        offset = 0
        for layer, size in enumerate(self.sizes):
            w = w_bar[offset : offset + size]
            rank = torch.empty(size, dtype=torch.long, device=w.device)
            rank[torch.argsort(w.abs(), descending=True)] = torch.arange(size, device=w.device)
            keeps[layer] = torch.tensor([min(size, max(1, math.floor(d * size))) for d in self.densities])
            entry[offset : offset + size] = torch.searchsorted(keeps[layer].to(w.device), rank, right=True)
            offset += size
        return entry, keeps

    def proxies(self, w_bar: Tensor, loss: LayerLoss | None) -> tuple[Tensor, Tensor]:
        """errors[l, j] and kept weights costs[l, j] of layer l at density j of the grid: the
        refitted loss `loss` gives, or the magnitude error ½‖δ‖² when loss is None."""
        entry, keeps = self.entries(w_bar)
        levels = len(self.densities)
        if loss is None:
            # ½ Σ w̄_i² over the weights of layer l not yet kept at j (entry_i > j).
            slot = self._owner(w_bar.device) * (levels + 1) + entry
            mass = torch.bincount(slot, weights=w_bar.double().square(), minlength=len(self.sizes) * (levels + 1))
            mass = mass.view(len(self.sizes), levels + 1).cpu()
            errors = 0.5 * (mass.sum(dim=1, keepdim=True) - mass.cumsum(dim=1)[:, :levels])
        else:
            bounds = torch.cumsum(torch.tensor([0, *self.sizes]), 0).tolist()
            errors = loss(w_bar, list(zip(bounds[:-1], bounds[1:])), entry, levels).double().cpu()
        return errors, keeps.double()

    # --------------------------------------------------------------- projection
    def _owner(self, device: torch.device) -> Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.owner.to(device)
        return self._on_device[device]

    def support_mask(self, v: Tensor, k: int) -> Tensor:
        owner = self._owner(v.device)
        if self.mode == "allocated" and self.budgets is None:
            return self.bind(v, k, None).support_mask(v, k)
        scores = v.abs()
        if self.mode == "caps":
            self.check_budget(k)
            mask = self._per_layer_top(scores, owner, self.floors())
            rest = k - int(mask.sum())
            if rest > 0:
                free = scores.masked_fill(mask, -1)
                mask.index_fill_(0, torch.topk(free, min(rest, int((~mask).sum())), sorted=False).indices, True)
            return mask
        return self._per_layer_top(scores, owner, self.layer_budgets(k))

    def _per_layer_top(self, scores: Tensor, owner: Tensor, budgets: Sequence[int]) -> Tensor:
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        for layer, budget in enumerate(budgets):
            index = torch.nonzero(owner == layer).flatten()
            if budget > 0 and index.numel():
                top = torch.topk(scores.index_select(0, index), min(budget, index.numel()), sorted=False).indices
                mask[index[top]] = True
        return mask

    def restrict(self, index: Tensor) -> SparsityConstraint:
        """The coordinates `index` only; the budgets and floors stay those of the full layers."""
        view = copy.copy(self)
        view.owner = self.owner[index.cpu()]
        view._on_device = {}
        return view

    def _counts(self, w: Tensor) -> list[int]:
        owner = self._owner(w.device)
        return torch.bincount(owner[w != 0], minlength=len(self.sizes)).tolist()

    def is_feasible(self, w: Tensor, k: int) -> bool:
        counts = self._counts(w)
        if self.mode == "caps":  # a support may hold zeros: the floors are met by padding with them
            return sum(max(c, f) for c, f in zip(counts, self.floors())) <= k
        if self.mode == "allocated" and self.budgets is None:
            return sum(counts) <= k
        return all(c <= b for c, b in zip(counts, self.layer_budgets(k)))

    def check(self, w: Tensor, k: int) -> dict:
        counts = self._counts(w)
        report = {**super().check(w, k), "layer_nonzero": counts}
        if self.cap is not None:
            report["layers_over_cap"] = sum(c < f for c, f in zip(counts, self.floors()))
        return report

    def settings(self) -> dict:
        settings: dict = {"name": "PerLayer", "label": f"per-layer {self.mode}", "mode": self.mode}
        if self.cap is not None:
            settings["max_layer_sparsity"] = self.cap
        if self.mode == "allocated":
            settings.update(densities=self.densities, resolution=self.resolution)
        if self.budgets is not None:
            settings.update(
                budgets=self.budgets, proxy=self.proxy, proxies=self.proxies_on_grid, proxy_total=self.proxy_total
            )
        return settings
