"""A budget on multiply-accumulates: the kept weights may cost at most `flops_fraction` of the
pruned layers' dense MACs, each weight costing its layer's MACs per weight (the uses of one
weight per sample: output rows of a linear layer, output positions of a conv), which the run
measures with a forward pass and passes in as `macs_per_weight`.

Alone (`weight_budget=false`, the default) the run's `sparsity` is not used: the pattern
keeps as many weights as the MACs allow (`fixed_keep` is every weight, so the run's target
sparsity reads 0). With `weight_budget=true` the kept weights must also number at most k.

Projection: maximise Σ_S v_i² subject to Σ_S c_i ≤ C (and |S| ≤ k), a knapsack. For a
multiplier μ ≥ 0 the Lagrangian keeps the (at most k) largest positive v_i² − μ·c_i; bisection
finds the smallest μ whose support fits C, then the weights left out are added while they fit,
best ratio v²/c first. Since every μ gives the bound L(μ) = Σ_{S(μ)} (v_i² − μ c_i) + μ·C ≥
the optimum, `gap` = L(μ) − kept ‖v‖² bounds how far the projection can be from the exact one;
the pruners record it for the projection of w̄ (`bind`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor

from ..errors import ArgumentError, check_number
from .constraint import LayerLoss, SparsityConstraint

BISECTIONS = 60


class FlopBudget(SparsityConstraint):
    """At most `flops_fraction` of the pruned layers' dense MACs (see the module)."""

    def __init__(
        self,
        shapes: Sequence[Sequence[int]] = (),
        macs_per_weight: Sequence[int] = (),
        flops_fraction: float = 0.5,
        weight_budget: bool = False,
    ):
        self.fraction = check_number("flops_fraction", flops_fraction, 0, inclusive=False, rule="a number in (0, 1]")
        if self.fraction > 1:
            raise ArgumentError(
                "flops_fraction", f"flops_fraction={flops_fraction!r} is not allowed; it must be in (0, 1]"
            )
        sizes = [prod(s) for s in shapes]
        if len(macs_per_weight) != len(sizes):
            raise ArgumentError(
                "macs_per_weight", f"macs_per_weight has {len(macs_per_weight)} values for {len(sizes)} pruned tensors"
            )
        self.macs_per_weight = [int(m) for m in macs_per_weight]
        self.weight_budget = bool(weight_budget)
        self.cost = torch.repeat_interleave(
            torch.tensor(self.macs_per_weight, dtype=torch.long), torch.tensor(sizes, dtype=torch.long)
        )
        self.dense_macs = int(self.cost.sum())
        self.budget = int(self.fraction * self.dense_macs)
        self.numel = self.cost.numel()
        self.gap: float | None = None  # of the projection of w̄, set by `bind`
        self._on_device: dict[torch.device, Tensor] = {}

    def fixed_keep(self) -> int | None:
        return None if self.weight_budget else self.numel

    def _cost(self, device: torch.device) -> Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.cost.to(device)
        return self._on_device[device]

    def _lagrangian_support(self, value: Tensor, cost: Tensor, mu: float, k: int) -> Tensor:
        score = value - mu * cost
        mask = score > 0
        if int(mask.sum()) > k:
            mask = torch.zeros_like(mask).index_fill_(0, torch.topk(score, k, sorted=False).indices, True)
        return mask

    def projection(self, v: Tensor, k: int) -> tuple[Tensor, float]:
        """The support of the projection of v and its gap (see the module)."""
        value = (v.double() ** 2).cpu()
        cost = self.cost.double()
        mu_low, mu_high = 0.0, float((value / cost.clamp_min(1)).max()) if value.numel() else 0.0
        mask = self._lagrangian_support(value, cost, 0.0, k)
        if float(cost[mask].sum()) > self.budget:
            for _ in range(BISECTIONS):
                mu = 0.5 * (mu_low + mu_high)
                if float(cost[self._lagrangian_support(value, cost, mu, k)].sum()) > self.budget:
                    mu_low = mu
                else:
                    mu_high = mu
            mu = mu_high
            mask = self._lagrangian_support(value, cost, mu, k)
        else:
            mu = 0.0
        bound = float((value - mu * cost)[mask].sum()) + mu * self.budget
        mask = self._fill(mask, value, cost, k)
        return mask.to(v.device), max(0.0, bound - float(value[mask].sum()))

    def _fill(self, mask: Tensor, value: Tensor, cost: Tensor, k: int) -> Tensor:
        """Add left-out weights, best value per MAC first, while they fit both budgets."""
        room, slots = self.budget - float(cost[mask].sum()), k - int(mask.sum())
        out = torch.nonzero(~mask & (value > 0)).flatten()
        if slots <= 0 or not out.numel():
            return mask
        order = out[torch.argsort(value[out] / cost[out].clamp_min(1), descending=True)]
        fits = torch.cumsum(cost[order], 0) <= room
        chosen = order[fits][:slots]
        return mask.index_fill(0, chosen, True)

    def support_mask(self, v: Tensor, k: int) -> Tensor:
        return self.projection(v, min(k, v.numel()))[0]

    def bind(self, w_bar: Tensor, k: int, loss: LayerLoss | None) -> SparsityConstraint:
        """The same budget, with the gap of the projection of w̄ recorded."""
        view = copy.copy(self)
        view.gap = self.projection(w_bar, min(k, w_bar.numel()))[1]
        return view

    def restrict(self, index: Tensor) -> SparsityConstraint:
        """The coordinates `index` only; the MAC budget stays the full layers' (weights outside
        `index` are zero and cost nothing)."""
        view = copy.copy(self)
        view.cost = self.cost[index.cpu()]
        view._on_device = {}
        return view

    def macs(self, w: Tensor) -> int:
        """MACs of w's nonzeros."""
        return int(self._cost(w.device)[w != 0].sum())

    def is_feasible(self, w: Tensor, k: int) -> bool:
        return int((w != 0).sum()) <= k and self.macs(w) <= self.budget

    def check(self, w: Tensor, k: int) -> dict:
        used = self.macs(w)
        return {
            **super().check(w, k),
            "macs": used,
            "macs_budget": self.budget,
            "macs_fraction": used / max(self.dense_macs, 1),
        }

    def settings(self) -> dict:
        settings = {
            "name": "FlopBudget",
            "label": f"FLOPs {self.fraction:g}" + (" + weights" if self.weight_budget else ""),
            "flops_fraction": self.fraction,
            "weight_budget": self.weight_budget,
            "dense_macs": self.dense_macs,
            "macs_budget": self.budget,
            "macs_per_weight": self.macs_per_weight,
        }
        if self.gap is not None:
            settings["projection_gap"] = self.gap
        return settings
