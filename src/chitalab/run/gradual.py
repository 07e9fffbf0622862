"""Gradual runs: prune at scheduled epochs while fine-tuning (see `GradualPruning`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pytorch_lightning.callbacks import Callback

from ..errors import UserError, check_choice, check_fraction, check_int
from ..pruning.schedules import SPARSITY_SCHEDULES, pruning_epochs, sparsity_levels
from ..training import Classifier, CosineRestarts, GradualPruning, evaluate_model
from ..training.module import OptimizerFactory
from .job import Job, RunOutcome
from .results import Evaluation

log = logging.getLogger(__name__)


class Gradual:
    """`schedule=gradual`: prune at `first_epoch` and then every `prune_every` epochs,
    `nprune_epochs` times, the sparsity rising along `kind` from `base_level` to the target;
    fine-tune with `optimizer` under `lr_scheduler` (restarting after each pruning step) to
    `epochs`, in batches of `batch_size`; `callbacks` (e.g. the checkpoint) go to the Trainer."""

    name = "gradual"

    def __init__(
        self,
        optimizer: OptimizerFactory,
        lr_scheduler: CosineRestarts,
        epochs: int = 100,
        first_epoch: int = 0,
        prune_every: int = 12,
        nprune_epochs: int = 7,
        kind: str = "cubic",
        base_level: float = 0.5,
        allow_regrowth: bool = False,
        batch_size: int | None = None,
        callbacks: Mapping[str, Callback] | None = None,
    ):
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.epochs = check_int("epochs", epochs, 1)
        self.pruning_epochs = pruning_epochs(first_epoch, prune_every, nprune_epochs)
        if self.pruning_epochs[-1] >= self.epochs:
            raise UserError(
                f"the last pruning epoch ({self.pruning_epochs[-1]}) must come before schedule.epochs={epochs}; "
                "raise schedule.epochs or lower schedule.nprune_epochs/prune_every"
            )
        self.kind = check_choice("kind", kind, SPARSITY_SCHEDULES)
        self.nprune_epochs = nprune_epochs
        self.base_level = check_fraction("base_level", base_level)
        self.allow_regrowth = bool(allow_regrowth)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
        self.callbacks = dict(callbacks or {})

    def execute(self, job: Job) -> RunOutcome:
        c = job.config
        levels = sparsity_levels(self.kind, self.base_level, c.sparsity, self.nprune_epochs)
        test_loader = c.datamodule.test_dataloader()
        pruning = GradualPruning(
            pruner=c.pruner,
            epochs=self.pruning_epochs,
            levels=levels,
            pruned_names=job.pruned.names,
            samples=job.samples,
            constraint=job.constraint,
            evaluate=lambda net: evaluate_model(net, test_loader, c.num_classes),
            allow_regrowth=self.allow_regrowth,
            progress=c.progress,
        )
        trainer = job.trainer([pruning, *self.callbacks.values()], max_epochs=self.epochs)
        job.recalibrate_batchnorm()
        module = Classifier(job.net, c.num_classes, self.optimizer, self.lr_scheduler, self.pruning_epochs)
        dense = Evaluation(**module.evaluate(trainer, test_loader, "dense"))
        log.info("dense model: test accuracy %.2f%%, loss %.4f", dense.test_acc, dense.test_loss)
        module.train()
        trainer.fit(module, train_dataloaders=c.datamodule.train_dataloader(), ckpt_path=c.ckpt_path)
        after = Evaluation(**module.evaluate(trainer, test_loader, "pruned"))
        log.info("after gradual pruning: test accuracy %.2f%%, loss %.4f", after.test_acc, after.test_loss)
        return RunOutcome(
            dense=dense,
            pruned=after,
            fisher_seconds=sum(r["fisher_seconds"] for r in pruning.trajectory),
            solver_seconds=sum(r["solver_seconds"] for r in pruning.trajectory),
            solver={},
            trajectory=pruning.trajectory,
            writes_outputs=trainer.is_global_zero,
            unlogged_series=[],  # the callback logged each pruning step as training went
        )
