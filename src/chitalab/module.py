"""The LightningModule used to evaluate (and later fine-tune) a classifier."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from .models import loss_function


class Classifier(pl.LightningModule):
    """Wraps a network with its loss and top-1 accuracy; `stage` prefixes the logged names."""

    def __init__(self, net: nn.Module, num_classes: int, stage: str = "test"):
        super().__init__()
        self.net = net
        self.loss_fn = loss_function(net)
        self.stage = stage
        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.accuracy.update(out, y)
        self.log(f"{self.stage}/loss", self.loss_fn(out, y), prog_bar=True)
        self.log(f"{self.stage}/acc", self.accuracy, prog_bar=True)

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, dataloader, stage: str) -> dict[str, float]:
        """Run `trainer.test` on `dataloader`; returns {"acc": percent, "loss": mean loss}."""
        self.stage = stage
        metrics = trainer.test(self, dataloaders=dataloader, verbose=False)[0]
        return {"acc": 100.0 * float(metrics[f"{stage}/acc"]), "loss": float(metrics[f"{stage}/loss"])}
