"""The interface every pruner implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..params import PrunedParams

SampleSource = Callable[[int, int], tuple[Tensor, Tensor]]
"""draw(count, round) -> (x, y): `count` training samples, a different draw for each round."""


@dataclass
class PruneContext:
    """What a pruner may use: the model (eval mode), its pruned weights, the loss, a source
    of training samples for Fisher estimates, and optionally a mask of weights that must
    stay zero (`frozen`, flat) and an evaluation callback for per-stage reports."""

    model: nn.Module
    pruned: PrunedParams
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    draw_samples: SampleSource
    progress: bool = True
    round: int = 0
    frozen: Tensor | None = None
    evaluate: Callable[[], dict[str, float]] | None = None


@dataclass
class PruneResult:
    """New values for the pruned weights (flat) and what it cost to get them."""

    weights: Tensor
    fisher_seconds: float = 0.0
    solver_seconds: float = 0.0
    stats: dict = field(default_factory=dict)


class Pruner(ABC):
    """Chooses which weights to keep (and their new values) for a target sparsity.

    Single-stage pruners leave the model unchanged; multi-stage ones update its weights
    as they go. The returned weights are the result either way.
    """

    name: str = "pruner"

    def samples_needed(self) -> int:
        """Training samples the pruner draws (0 for data-free pruners)."""
        return 0

    @abstractmethod
    def settings(self) -> dict:
        """The pruner's configuration, as recorded in results.json."""

    @abstractmethod
    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        """Return weights with at most int((1 − sparsity)·p) nonzeros, zero where `ctx.frozen`."""
