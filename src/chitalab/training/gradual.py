"""Gradual pruning during training, as a Lightning callback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..outputs import flatten_metrics
from ..params import PrunedParams, check_finite_state, keep_count
from ..pruning import LossFn, PruneContext, Pruner, SampleStream
from ..solver import SparsityConstraint

log = logging.getLogger(__name__)
EvaluateNet = Callable[[nn.Module], dict[str, float]]
"""net -> {"test_acc", "test_loss"} (see `chitalab.training.module.test_metrics`)."""


class PrunableModule(Protocol):
    """What the callback needs from the LightningModule: the network and its loss."""

    net: nn.Module
    loss_fn: LossFn


class GradualPruning(pl.Callback):
    """Prune the module's `net` at the start of each epoch in `epochs` to the matching sparsity
    in `levels` (the pruner sees the same `PruneContext` as in a one-shot run: the run's sample
    stream with the step's own draws, the constraint, and an evaluation), then keep pruned weights exactly zero while fine-tuning: their gradients
    are zeroed before each optimizer step, their momentum buffers when pruning, and the
    weights after each step.

    Any pruner works. With DDP, rank 0 draws the Fisher samples and prunes; the new
    weights are broadcast, so every rank derives identical masks (checked by gathering
    a checksum of weights and masks from every rank into the trajectory). The masks, the
    next pruning step and the trajectory live in the callback's state, which Lightning
    saves in checkpoints and restores with `ckpt_path`.
    """

    def __init__(
        self,
        pruner: Pruner,
        epochs: list[int],
        levels: list[float],
        pruned_names: list[str],
        samples: SampleStream,
        constraint: SparsityConstraint,
        evaluate: EvaluateNet | None = None,
        allow_regrowth: bool = False,
        progress: bool = True,
        after_step: Callable[[pl.Trainer], None] | None = None,
        identity: dict[str, Any] | None = None,
    ):
        if len(epochs) != len(levels):
            raise ValueError(f"{len(epochs)} pruning epochs but {len(levels)} sparsity levels")
        self.pruner = pruner
        self.epochs = list(epochs)
        self.levels = list(levels)
        self.pruned_names = list(pruned_names)
        self.samples = samples
        self.constraint = constraint
        self.evaluate = evaluate
        self.allow_regrowth = allow_regrowth
        self.progress = progress
        self.after_step = after_step  # e.g. LastCheckpoint.save: a resumable state right after each step
        self.identity = dict(identity or {})  # the run's settings, saved so a resume can be checked
        self.masks: dict[str, Tensor] | None = None
        self.next_step = 0
        self.trajectory: list[dict] = []

    # ----------------------------------------------------------------- helpers
    def _pruned(self, module: PrunableModule) -> PrunedParams:
        params = dict(module.net.named_parameters())
        return PrunedParams(self.pruned_names, [params[name] for name in self.pruned_names])

    def _masked_params(self, module: PrunableModule) -> list[tuple[nn.Parameter, Tensor]]:
        """(weight, mask) pairs; a mask restored from a checkpoint moves to its weight's device once."""
        masks = self.masks
        if masks is None:
            return []
        pairs = []
        for name, p in zip(self.pruned_names, self._pruned(module).params):
            if masks[name].device != p.device:
                masks[name] = masks[name].to(p.device)
            pairs.append((p, masks[name]))
        return pairs

    def _log(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)

    def _checksums(self, trainer: pl.Trainer, pruned: PrunedParams) -> list[float]:
        """One number per rank summarising its weights and masks (equal when ranks agree)."""
        w = pruned.flatten().double()
        local = (w.abs().sum() + (w != 0).sum() + (w * torch.arange(1, w.numel() + 1, device=w.device)).sum()).reshape(
            1
        )
        return [float(v) for v in trainer.strategy.all_gather(local).reshape(-1)]

    # ------------------------------------------------------------------ pruning
    def _prune_step(self, trainer: pl.Trainer, module: PrunableModule) -> None:
        step, level = self.next_step, self.levels[self.next_step]
        net = module.net
        pruned = self._pruned(module)
        was_training = net.training
        net.eval()
        timing: dict[str, Any] | None = None
        stages: list[dict] = []
        if trainer.is_global_zero:
            frozen = None
            if self.masks is not None and not self.allow_regrowth:
                frozen = torch.cat([~self.masks[name].reshape(-1) for name in self.pruned_names]).to(
                    pruned.params[0].device
                )
            evaluate = self.evaluate
            ctx = PruneContext(
                model=net,
                pruned=pruned,
                loss_fn=module.loss_fn,
                samples=self.samples,
                constraint=self.constraint,
                progress=self.progress,
                step=step,
                frozen=frozen,
                evaluate=None if evaluate is None else (lambda: evaluate(net)),
            )
            outcome = self.pruner.prune(ctx, level)
            pruned.assign(outcome.weights)
            check_finite_state(net, f"after pruning step {step}", "the pruner diverged; check its knobs")
            weights = pruned.flatten()
            if not self.constraint.is_feasible(weights, keep_count(level, weights.numel())):
                raise RuntimeError(
                    f"pruning step {step} left weights that {type(self.constraint).__name__} does not allow"
                )
            timing = {"fisher_seconds": outcome.fisher_seconds, "solver_seconds": outcome.solver_seconds}
            stages = outcome.stages
        if trainer.world_size > 1:
            for p in pruned.params:
                dist.broadcast(p.data, src=0)
            timing = trainer.strategy.broadcast(timing, src=0)
        net.train(was_training)
        self.masks = {name: p.detach() != 0 for name, p in zip(pruned.names, pruned.params)}
        self._zero_momentum(trainer, module)
        self.next_step += 1

        record = {
            "step": step,
            "epoch": trainer.current_epoch,
            "target_sparsity": level,
            "measured_sparsity": pruned.sparsity(),
            **(timing or {}),
            "rank_checksums": self._checksums(trainer, pruned),
        }
        if stages:
            record["stages"] = stages
        if self.evaluate is not None and trainer.is_global_zero:
            record["after_pruning"] = self.evaluate(net)
        self.trajectory.append(record)
        log.info("pruning step %d at epoch %d: %s", step, trainer.current_epoch, record)
        self._log(trainer, flatten_metrics({k: v for k, v in record.items() if k != "stages"}, "prune/"))
        if self.after_step is not None:
            self.after_step(trainer)

    def _zero_momentum(self, trainer: pl.Trainer, module: PrunableModule) -> None:
        for optimizer in trainer.optimizers:
            for p, mask in self._masked_params(module):
                state = optimizer.state.get(p, {})
                for buffer in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                    if isinstance(state.get(buffer), Tensor):
                        state[buffer].mul_(mask)

    # -------------------------------------------------------------- Lightning hooks
    def on_train_epoch_start(self, trainer: pl.Trainer, lightning_module: pl.LightningModule) -> None:
        module = cast(PrunableModule, lightning_module)
        if self.next_step < len(self.epochs) and trainer.current_epoch == self.epochs[self.next_step]:
            self._prune_step(trainer, module)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, lightning_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        module = cast(PrunableModule, lightning_module)
        if self.masks is not None:
            for p, mask in self._masked_params(module):
                if p.grad is not None:
                    p.grad.mul_(mask)

    def on_train_batch_end(
        self, trainer: pl.Trainer, lightning_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        module = cast(PrunableModule, lightning_module)
        if self.masks is not None:
            with torch.no_grad():
                for p, mask in self._masked_params(module):
                    p.mul_(mask)

    def on_train_epoch_end(self, trainer: pl.Trainer, lightning_module: pl.LightningModule) -> None:
        """At the end of a fine-tuning phase, record the accuracy it reached."""
        following = trainer.current_epoch + 1
        phase_ends = following == trainer.max_epochs or (
            self.next_step < len(self.epochs) and following == self.epochs[self.next_step]
        )
        if not (phase_ends and self.trajectory and self.evaluate is not None and trainer.is_global_zero):
            return
        record = self.trajectory[-1]
        net = cast(PrunableModule, lightning_module).net
        record.update(finetuned_until_epoch=trainer.current_epoch, after_finetuning=self.evaluate(net))
        self._log(
            trainer, flatten_metrics({"step": record["step"], "after_finetuning": record["after_finetuning"]}, "prune/")
        )

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        masks = None if self.masks is None else {name: m.cpu() for name, m in self.masks.items()}
        return {"masks": masks, "next_step": self.next_step, "trajectory": self.trajectory, "config": self.identity}

    def load_state_dict(self, state_dict: dict) -> None:
        self.masks = state_dict["masks"]
        self.next_step = state_dict["next_step"]
        self.trajectory = state_dict["trajectory"]
