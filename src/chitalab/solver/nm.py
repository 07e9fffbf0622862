"""N:M sparsity: at most N nonzeros in every group of M consecutive weights along the input
dimension (2:4 is what NVIDIA's sparse tensor cores run).

Groups. A weight of shape [out, in, *kernel] (linear: [out, in]; conv: [out, in, kh, kw]) is
cut, at each output unit and kernel position (o, kh, kw), into runs of M consecutive input
channels: NVIDIA's ASP grouping for convolutions. When `in` is not a multiple of M the last
run of each row is shorter (r < M weights) and keeps at most min(N, r): what zero-padding the
input dimension to a multiple of M gives, so the padded tensor is exactly N:M. A layer with
fewer than M inputs (ResNet's RGB stem, depthwise convs) therefore keeps min(N, in) per row.

Budget. The pattern fixes the density: the run's target keeps every allowed slot
(`fixed_keep`; the configured `sparsity` is replaced). A larger budget k (CHITA++ stages and
gradual steps reach the target from below) loosens the pattern with it: the supports for k
hold at most N' per group, N' the smallest value in [N, M] whose slots hold k weights, at most
k in total, and every group's own N slots (supports may hold zeros, so a group with fewer
nonzeros is padded). Stages thus follow the budget schedule (e.g. 4:4 → 3:4 → 2:4) and never
empty a group below N, which a weight pruned for good at an early stage would waste at the
last. The projection is exact (greedy is optimal: the top N of every group, then the largest
of the groups' next N' − N up to k). A budget below the N:M slots keeps the k largest of the
top N of every group.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from math import prod

import torch
from torch import Tensor

from ..errors import ArgumentError, check_int
from .constraint import SparsityConstraint, crossing_step


def nm_groups(shapes: Sequence[Sequence[int]], m: int) -> Tensor:
    """The group id of every pruned weight (flat order), groups as in the module docstring."""
    ids, offset = [], 0
    for shape in shapes:
        out, inputs = (shape[0], prod(shape[1:2])) if len(shape) > 1 else (1, prod(shape))
        positions = prod(shape[2:])
        per_row = -(-inputs // m)
        o = torch.arange(out).view(out, 1, 1)
        i = torch.arange(inputs).view(1, inputs, 1)
        s = torch.arange(positions).view(1, 1, positions)
        ids.append(((o * positions + s) * per_row + i // m + offset).reshape(-1))
        offset += out * positions * per_row
    return torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)


class NM(SparsityConstraint):
    """At most `n` nonzeros in every group of `m` consecutive input weights (see the module)."""

    def __init__(self, shapes: Sequence[Sequence[int]] = (), n: int = 2, m: int = 4):
        self.m = check_int("m", m, 1)
        self.n = check_int("n", n, 1)
        if self.n > self.m:
            raise ArgumentError("n", f"n={n!r} is not allowed; it must be at most m={m} (N nonzeros in M weights)")
        self.shapes = [tuple(s) for s in shapes]
        self.group = nm_groups(self.shapes, self.m)
        self.group_sizes = torch.bincount(self.group, minlength=int(self.group.max()) + 1 if self.group.numel() else 0)
        # slots[j]: weights that j per group allow (short groups keep all of theirs up to j)
        self.slots = [int(self.group_sizes.clamp(max=j).sum()) for j in range(self.m + 1)]
        self.numel = self.group.numel()
        self._on_device: dict[torch.device, Tensor] = {}

    # ------------------------------------------------------------------ budget
    def per_group(self, k: int) -> int:
        """N' for budget k: the smallest value in [n, m] whose slots hold k weights."""
        for j in range(self.n, self.m + 1):
            if self.slots[j] >= k:
                return j
        return self.m

    def fixed_keep(self) -> int | None:
        """Every N:M slot: the pattern fixes the run's budget."""
        return self.slots[self.n]

    # --------------------------------------------------------------- projection
    def _groups(self, device: torch.device) -> Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.group.to(device)
        return self._on_device[device]

    def _ranks(self, v: Tensor, group: Tensor) -> Tensor:
        """Rank of each |v| within its group, 0 for the largest (ties: lower index first)."""
        order = torch.argsort(v.abs(), descending=True, stable=True)
        order = order[torch.argsort(group[order], stable=True)]
        counts = torch.unique_consecutive(group[order], return_counts=True)[1]
        starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(order.numel(), device=v.device) - starts
        return ranks

    def support_mask(self, v: Tensor, k: int) -> Tensor:
        group = self._groups(v.device)
        ranks = self._ranks(v, group)
        mask = ranks < self.per_group(k)
        if k <= self.slots[self.n]:  # within the N:M slots: the k largest of every group's top N
            if int(mask.sum()) <= k:
                return mask
            scores = v.abs().masked_fill(~mask, -1)
            return torch.zeros_like(mask).index_fill_(0, torch.topk(scores, k, sorted=False).indices, True)
        # every group's own N slots count, also those of coordinates a restricted view lacks
        # (they are zeros that fill them)
        counts = torch.bincount(group[mask], minlength=self.group_sizes.numel())
        if int(torch.maximum(counts, self._slots(v.device)).sum()) <= k:
            return mask
        floor = ranks < self.n  # the budget binds: every group's own N first
        scores = v.abs().masked_fill(~mask | floor, -1)
        room = k - self.slots[self.n]
        return floor.index_fill_(
            0, torch.topk(scores, min(room, int((mask & ~floor).sum())), sorted=False).indices, True
        )

    def _slots(self, device: torch.device) -> Tensor:
        """Every full group's N slots, min(N, size)."""
        return self.group_sizes.to(device).clamp(max=self.n)

    def restrict(self, index: Tensor) -> SparsityConstraint:
        """The coordinates `index` only; N'(k) and the N slots of every group stay those of the
        full tensors (the coordinates left out count as zeros)."""
        view = copy.copy(self)
        view.group = self.group[index.cpu()]
        view._on_device = {}
        return view

    def is_feasible(self, w: Tensor, k: int) -> bool:
        """At most N' nonzeros per group, and room for every group's N slots (padded with zeros
        where a group has fewer nonzeros) within k."""
        counts = torch.bincount(self._groups(w.device)[w != 0], minlength=self.group_sizes.numel())
        if int(counts.sum()) > k or bool((counts > self.per_group(k)).any()):
            return False
        return int(torch.maximum(counts, self._slots(w.device)).sum()) <= max(k, self.slots[self.n])

    def change_step(self, w: Tensor, g: Tensor, in_support: Tensor, k: int) -> float:
        """Closed form. While the budget does not bind (each group keeps its own top N'), a kept
        weight competes only with its group's pruned ones (`crossing_step` per group): exact.
        When it binds, the step at which the first pruned weight overtakes any kept one (the
        global top-k's closed form): a lower bound, as the support cannot change while every
        kept weight stays above every pruned one (the line search then starts earlier)."""
        group = self._groups(w.device)
        present = torch.bincount(group, minlength=self.group_sizes.numel())
        support = torch.nonzero(in_support).flatten()
        if int(present.clamp(max=self.per_group(k)).sum()) > k:
            off_max = g.abs().masked_fill(in_support, 0).max() if g.numel() else torch.zeros((), dtype=g.dtype)
            return crossing_step(w.index_select(0, support), g.index_select(0, support), off_max)
        off = torch.zeros(present.numel(), dtype=g.dtype, device=g.device)
        off = off.scatter_reduce(0, group, g.abs().masked_fill(in_support, 0), reduce="amax")
        contested = torch.zeros(present.numel(), dtype=torch.bool, device=g.device)
        contested[group[~in_support]] = True  # a group without pruned weights never changes
        support = torch.nonzero(in_support & contested[group]).flatten()
        return crossing_step(w.index_select(0, support), g.index_select(0, support), off[group[support]])

    # ------------------------------------------------------------------ reports
    def check(self, w: Tensor, k: int) -> dict:
        counts = torch.bincount(self._groups(w.device)[w != 0], minlength=self.group_sizes.numel())
        return {
            **super().check(w, k),
            "groups": int(self.group_sizes.numel()),
            "max_nonzero_per_group": int(counts.max()) if counts.numel() else 0,
            "groups_over_n": int((counts > self.n).sum()),
        }

    def settings(self) -> dict:
        return {
            "name": "NM",
            "label": f"{self.n}:{self.m}",
            "n": self.n,
            "m": self.m,
            "grouping": "m consecutive input channels at each output unit and kernel position",
            "slots": self.slots[self.n],
        }
