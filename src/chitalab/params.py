"""Which parameters are pruned, and moving them to and from one flat vector."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import UserError

PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class PrunedParams:
    """An ordered set of weight tensors treated as one flat vector of length `numel`."""

    names: list[str]
    params: list[nn.Parameter]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    def flatten(self) -> Tensor:
        """The current weights as one detached vector."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def assign(self, flat: Tensor) -> None:
        """Write a flat vector back into the weight tensors."""
        if flat.numel() != self.numel:
            raise ValueError(f"expected {self.numel} values, got {flat.numel()}")
        offset = 0
        with torch.no_grad():
            for p in self.params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Shape of each tensor, in flat order."""
        return [tuple(p.shape) for p in self.params]

    @property
    def sizes(self) -> list[int]:
        """Number of entries of each tensor, in flat order."""
        return [p.numel() for p in self.params]

    def segments(self, start: int, stop: int) -> list[tuple[int, slice, slice]]:
        """How the flat range [start, stop) splits over the tensors: (tensor index, slice of
        that flattened tensor, slice of the range) for each tensor it overlaps."""
        out, offset = [], 0
        for i, size in enumerate(self.sizes):
            lo, hi = max(start, offset), min(stop, offset + size)
            if lo < hi:
                out.append((i, slice(lo - offset, hi - offset), slice(lo - start, hi - start)))
            offset += size
        return out

    def count_zeros(self) -> int:
        return sum(int((p == 0).sum()) for p in self.params)

    def sparsity(self) -> float:
        """Measured sparsity: the fraction of exact zeros among the pruned weights."""
        return self.count_zeros() / self.numel


def check_finite_state(model: nn.Module, when: str, advice: str) -> None:
    """Refuse a model with a NaN or inf in any parameter or buffer (pruned or not), naming the
    first bad tensor, `when` it was found and the `advice`."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise UserError(f"{name} has {bad} non-finite values (NaN or inf) {when}; {advice}")


def select_pruned(model: nn.Module, include: list[str] | None = None, exclude: list[str] | None = None) -> PrunedParams:
    """Weights of conv and linear layers whose names match `include` and not `exclude`
    (shell-style patterns such as "layer1.*"). Biases and normalisation layers are never pruned."""
    include = list(include or ["*"])
    exclude = list(exclude or [])
    names, params = [], []
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_MODULES):
            continue
        name = f"{module_name}.weight" if module_name else "weight"
        if any(fnmatch.fnmatchcase(name, pat) for pat in include) and not any(
            fnmatch.fnmatchcase(name, pat) for pat in exclude
        ):
            names.append(name)
            params.append(module.weight)
    if not params:
        raise UserError(
            f"no conv/linear weight matches include={include} exclude={exclude}; "
            "check model.prune.include and model.prune.exclude"
        )
    return PrunedParams(names, params)  # type: ignore[arg-type]  # module.weight is a Parameter


def keep_count(sparsity: float, numel: int) -> int:
    """Global budget k = int((1 − sparsity) · numel), as in the paper."""
    return int((1 - sparsity) * numel)


def sparsity_keeping(k: int, numel: int) -> float:
    """The sparsity whose `keep_count` is exactly k: 1 − k/numel, nudged down past rounding."""
    sparsity = 1 - k / numel
    while keep_count(sparsity, numel) < k:
        sparsity = math.nextafter(sparsity, -math.inf)
    return sparsity
