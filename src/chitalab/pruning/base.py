"""The interface every pruner implements, and what a pruner may use (`PruneContext`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from ..params import PrunedParams
from ..solver import SparsityConstraint
from .streams import DrawKey, SampleStream

LossFn = Callable[..., Tensor]
Evaluate = Callable[[], dict[str, float]]
"""() -> {"test_acc": percent, "test_loss": mean loss} of the model as it is now."""


@dataclass
class PruneContext:
    """What a pruner may use: the model (eval mode), its pruned weights, the loss, the run's
    sample stream, the sparsity constraint over the pruned weights, where in the run it is
    (gradual `step`, multi-stage `stage`: together they name its sample draws), optionally a
    mask of weights that must stay zero (`frozen`, flat) and an evaluation of the current
    model for per-stage reports."""

    model: nn.Module
    pruned: PrunedParams
    loss_fn: LossFn
    samples: SampleStream
    constraint: SparsityConstraint
    progress: bool = True
    step: int = 0
    stage: int = 0
    frozen: Tensor | None = None
    evaluate: Evaluate | None = None

    def draw(self, purpose: str, count: int) -> tuple[Tensor, Tensor]:
        """`count` training samples for `purpose`, a draw of their own at this step and stage."""
        return self.samples.draw(count, DrawKey(purpose, self.step, self.stage))


def bound_stats(ctx: PruneContext, bound: SparsityConstraint) -> dict:
    """The constraint as bound to this pruning call (allocated per-layer budgets and the proxies
    they minimise) for the pruner's stats, when binding changed it."""
    return {} if bound is ctx.constraint else {"bound_pattern": bound.settings()}


@dataclass
class PruneResult:
    """New values for the pruned weights (flat) and what it cost to get them; `stages` holds
    one record per stage of a multi-stage pruner (empty otherwise)."""

    weights: Tensor
    fisher_seconds: float = 0.0
    solver_seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)


class Pruner(ABC):
    """Chooses which weights to keep (and their new values) for a target sparsity.

    Single-stage pruners leave the model unchanged; multi-stage ones update its weights
    as they go. The returned weights are the result either way.
    """

    name: ClassVar[str]

    def samples_needed(self) -> int:
        """Training samples the pruner draws at once (0 for data-free pruners)."""
        return 0

    def label(self) -> str:
        """The method's name in reports, with its variant in parentheses: "CHITA (block)"."""
        return self.name

    @abstractmethod
    def settings(self) -> dict:
        """The pruner's configuration, as recorded in results.json."""

    @abstractmethod
    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        """Return weights allowed by `ctx.constraint` for int((1 − sparsity)·p) nonzeros, zero
        where `ctx.frozen`."""
