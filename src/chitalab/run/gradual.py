"""Gradual runs: prune at scheduled epochs while fine-tuning (see `GradualPruning`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..errors import ArgumentError, UserError, check_choice, check_fraction, check_int, check_number
from ..progress import heartbeat
from ..pruning.schedules import SPARSITY_SCHEDULES, pruning_epochs, sparsity_levels
from ..training import Classifier, CosineRestarts, GradualPruning, LastCheckpoint, evaluate_model
from ..training.module import OptimizerFactory
from ..training.safe_stop import StopAtSafePoint
from .job import Job, RunOutcome
from .results import Evaluation
from .resume import check_resume

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
        self.optimizer = check_optimizer(optimizer)
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

    def last_checkpoint(self) -> LastCheckpoint | None:
        found = [cb for cb in self.callbacks.values() if isinstance(cb, LastCheckpoint)]
        return found[0] if found else None

    def execute(self, job: Job) -> RunOutcome:
        c = job.config
        if c.ckpt_path is not None:
            check_resume(c.ckpt_path, c.resume_identity, c.allow_resume_mismatch)
        checkpoint = self.last_checkpoint()
        hint = f"resume with ckpt_path={checkpoint.path}" if checkpoint is not None else ""
        levels = sparsity_levels(self.kind, self.base_level, job.sparsity, self.nprune_epochs)
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
            after_step=None if checkpoint is None else checkpoint.save,
            identity=c.resume_identity,
        )
        # the checkpoint first (it saves at each epoch start before the pruning step), the stop
        # check after the pruning callback (a signal during a step stops once its checkpoint is written)
        others = [cb for cb in self.callbacks.values() if cb is not checkpoint]
        first = [] if checkpoint is None else [checkpoint]
        callbacks = [*first, pruning, StopAtSafePoint(hint), *others]
        # Lightning's own ModelCheckpoint only when the user configured one (LastCheckpoint resumes)
        lightning_checkpoints = any(isinstance(cb, ModelCheckpoint) for cb in others)
        trainer = job.trainer(callbacks, max_epochs=self.epochs, enable_checkpointing=lightning_checkpoints)
        job.recalibrate_batchnorm()
        module = Classifier(job.net, c.num_classes, self.optimizer, self.lr_scheduler, self.pruning_epochs)
        dense = Evaluation.of(module.evaluate(trainer, test_loader, "dense"))
        log.info("dense model: test accuracy %.2f%%, loss %.4f", dense.test_acc, dense.test_loss)
        module.train()
        with heartbeat("training", c.progress, status=lambda: training_status(trainer, self.epochs)):
            trainer.fit(
                module, train_dataloaders=c.datamodule.train_dataloader(), ckpt_path=c.ckpt_path, weights_only=True
            )
        after = Evaluation.of(module.evaluate(trainer, test_loader, "pruned"))
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


def check_optimizer(optimizer: OptimizerFactory) -> OptimizerFactory:
    """Check the numeric keywords of the `_partial_` optimizer before any long work (the optimizer
    itself is built only when training starts, after the dense evaluation)."""
    keywords = getattr(optimizer, "keywords", None) or {}
    positive, non_negative = ("lr", "eps"), ("momentum", "weight_decay", "dampening")
    for name, value in keywords.items():
        if name in positive:
            check_number(f"optimizer.{name}", value, 0, inclusive=False)
        elif name in non_negative:
            check_number(f"optimizer.{name}", value, 0)
        elif name == "betas":
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                raise ArgumentError(
                    "optimizer.betas", f"optimizer.betas={value!r} is not allowed; it must be two numbers in [0, 1)"
                )
            for beta in value:
                b = check_number("optimizer.betas", beta, 0, rule="two numbers in [0, 1)")
                if b >= 1:
                    raise ArgumentError(
                        "optimizer.betas",
                        f"optimizer.betas={list(value)!r} is not allowed; it must be two numbers in [0, 1)",
                    )
    return optimizer


def training_status(trainer: Any, epochs: int) -> str:
    """Where a fit is, for the heartbeat line: the epoch of `epochs` and the optimizer steps done."""
    return f"epoch {trainer.current_epoch + 1}/{epochs}, {trainer.global_step} steps"
