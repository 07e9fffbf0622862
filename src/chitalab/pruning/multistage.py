"""CHITA++: reach the target sparsity in stages, recomputing the Fisher at each stage."""

from __future__ import annotations

import dataclasses
import logging

from ..errors import check_choice, check_fraction, check_int
from .base import PruneContext, Pruner, PruneResult
from .schedules import SPARSITY_SCHEDULES, sparsity_levels

log = logging.getLogger(__name__)


class MultiStagePruner(Pruner):
    """Prune with `stage_pruner` at each level of a sparsity schedule from `base_level`.

    Every stage starts from the previous stage's weights, so gradients (and w̄) are
    recomputed there, from the stage's own sample draw. With `allow_regrowth` false (the
    default) a weight pruned at one stage stays zero at all later ones (monotone masks: the
    search space only shrinks); with true, each stage may choose any support and bring
    weights back.
    """

    name = "chitapp"

    def __init__(
        self,
        stage_pruner: Pruner,
        num_stages: int = 10,
        schedule: str = "cubic",
        base_level: float = 0.1,
        allow_regrowth: bool = False,
    ):
        self.stage_pruner = stage_pruner
        self.num_stages = check_int("num_stages", num_stages, 1)
        self.schedule = check_choice("schedule", schedule, SPARSITY_SCHEDULES)
        self.base_level = check_fraction("base_level", base_level)
        self.allow_regrowth = bool(allow_regrowth)

    def samples_needed(self) -> int:
        return self.stage_pruner.samples_needed()

    def label(self) -> str:
        base, _, variant = self.stage_pruner.label().partition(" ")
        return f"{base}++ {variant}".strip()

    def settings(self) -> dict:
        return {
            "name": self.name,
            "num_stages": self.num_stages,
            "schedule": self.schedule,
            "base_level": self.base_level,
            "allow_regrowth": self.allow_regrowth,
            "stage_pruner": self.stage_pruner.settings(),
        }

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        levels = sparsity_levels(self.schedule, self.base_level, sparsity, self.num_stages)
        frozen = ctx.frozen
        stages: list[dict] = []
        fisher_seconds = solver_seconds = 0.0
        for i, level in enumerate(levels):
            stage_ctx = dataclasses.replace(ctx, stage=i, frozen=None if self.allow_regrowth else frozen)
            outcome = self.stage_pruner.prune(stage_ctx, level)
            ctx.pruned.assign(outcome.weights)
            frozen = outcome.weights == 0
            fisher_seconds += outcome.fisher_seconds
            solver_seconds += outcome.solver_seconds
            record = {
                "stage": i,
                "sparsity": level,
                "measured_sparsity": ctx.pruned.sparsity(),
                "fisher_seconds": outcome.fisher_seconds,
                "solver_seconds": outcome.solver_seconds,
                "objective": outcome.stats.get("objective"),
            }
            if ctx.evaluate is not None:
                record.update(ctx.evaluate())
            log.info("CHITA++ stage %d/%d: %s", i + 1, len(levels), {k: v for k, v in record.items() if k != "stage"})
            stages.append(record)
        return PruneResult(
            weights=ctx.pruned.flatten(),
            fisher_seconds=fisher_seconds,
            solver_seconds=solver_seconds,
            stages=stages,
        )
