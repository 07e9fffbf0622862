"""The Lightning side of a graceful stop (see `chitalab.signals`): defer SIGTERM/SIGINT while
training and stop at the next safe point."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from ..signals import STOP


class StopAtSafePoint(pl.Callback):
    """Defers signals while training and stops at the next batch end or after a pruning step
    (placed after the pruning callback, so its checkpoint is written first); `resume_hint`
    says what to run next."""

    def __init__(self, resume_hint: str = ""):
        self.resume_hint = resume_hint

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.deferred = True
        STOP.raise_if_requested(self.resume_hint)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.raise_if_requested(self.resume_hint)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        STOP.raise_if_requested(self.resume_hint)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        STOP.deferred = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        STOP.deferred = False
