"""The LightningModule that evaluates and fine-tunes a classifier."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

from ..models import loss_function
from .inference import evaluate_model, test_metrics
from .lr import CosineRestarts

__all__ = ["Classifier", "OptimizerFactory", "evaluate_model", "test_metrics"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
"""params -> optimizer: a `_partial_` optimizer from the config (SGD by default)."""


class Classifier(pl.LightningModule):
    """Wraps a network with its loss and top-1 accuracy; `stage` prefixes logged names. To
    train, give an optimizer factory and the cosine schedule with its restart epochs."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: CosineRestarts | None = None,
        restart_epochs: Sequence[int] = (),
        stage: str = "test",
    ):
        super().__init__()
        self.net = net
        self.loss_fn = loss_function(net)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.restart_epochs = list(restart_epochs)
        self.stage = stage
        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.train_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        out = self(x)
        loss = self.loss_fn(out, y)
        self.train_accuracy.update(out, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.accuracy.update(out, y)
        # returned by `evaluate` only: the run logs them once, in percent, with its results
        self.log(f"{self.stage}/test_loss", self.loss_fn(out, y), prog_bar=True, logger=False)
        self.log(f"{self.stage}/test_acc", self.accuracy, prog_bar=True, logger=False)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("Classifier needs an optimizer to train")
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        scheduler = self.lr_scheduler_factory(optimizer, self.restart_epochs, total, per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, dataloader: DataLoader, stage: str) -> dict[str, float]:
        """Run `trainer.test` on `dataloader`; returns `test_metrics` (accuracy in percent)."""
        self.stage = stage
        trainer.test(self, dataloaders=dataloader, verbose=False)
        metrics = trainer.callback_metrics  # logged with logger=False: not in test()'s return value
        return test_metrics(100.0 * float(metrics[f"{stage}/test_acc"]), float(metrics[f"{stage}/test_loss"]))
