"""The LightningModule that evaluates and fine-tunes a classifier."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

from .models import loss_function
from .schedules import cosine_with_restarts


@dataclass
class OptimConfig:
    """SGD with a cosine learning rate from `lr` to `lr_min` that restarts at the given
    epochs (the pruning steps) and decays to the end of training after the last one."""

    lr: float = 0.1
    lr_min: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    restart_epochs: list[int] = field(default_factory=list)


class Classifier(pl.LightningModule):
    """Wraps a network with its loss and top-1 accuracy; `stage` prefixes logged names."""

    def __init__(self, net: nn.Module, num_classes: int, optim: OptimConfig | None = None, stage: str = "test"):
        super().__init__()
        self.net = net
        self.loss_fn = loss_function(net)
        self.optim = optim
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
        self.log(f"{self.stage}/loss", self.loss_fn(out, y), prog_bar=True)
        self.log(f"{self.stage}/acc", self.accuracy, prog_bar=True)

    def configure_optimizers(self):
        if self.optim is None:
            raise RuntimeError("Classifier needs an OptimConfig to train")
        o = self.optim
        optimizer = torch.optim.SGD(
            self.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs, 1), 1)
        restarts = [e * per_epoch for e in o.restart_epochs]
        ratio = o.lr_min / o.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_with_restarts(step, restarts, total, ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, dataloader, stage: str) -> dict[str, float]:
        """Run `trainer.test` on `dataloader`; returns {"acc": percent, "loss": mean loss}."""
        self.stage = stage
        metrics = trainer.test(self, dataloaders=dataloader, verbose=False)[0]
        return {"acc": 100.0 * float(metrics[f"{stage}/acc"]), "loss": float(metrics[f"{stage}/loss"])}


@torch.no_grad()
def evaluate_model(net: nn.Module, dataloader: DataLoader, num_classes: int) -> dict[str, float]:
    """Accuracy (percent) and mean loss of `net` in eval mode, outside any Trainer loop
    (the gradual-pruning callback measures mid-training with it). Restores the mode."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    loss_fn = loss_function(net)
    # Local by design (rank 0 only under DDP): no cross-process sync, which would deadlock.
    accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro", sync_on_compute=False).to(device)
    total_loss, count = 0.0, 0
    for x, y in dataloader:
        x, y = x.to(device), y.to(device)
        out = net(x)
        accuracy.update(out, y)
        total_loss += float(loss_fn(out, y, reduction="sum"))
        count += y.numel()
    net.train(was_training)
    return {"acc": 100.0 * float(accuracy.compute()), "loss": total_loss / max(count, 1)}
