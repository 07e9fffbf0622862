"""Builds everything from the Hydra config and runs one pruning job (one-shot or gradual)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import Logger

from .batchnorm import recalibrate_batchnorm
from .callbacks import GradualPruning
from .data import PruningDataModule
from .errors import UserError
from .loggers import build_logger, log_run
from .models import build_model, loss_function
from .module import Classifier, OptimConfig, evaluate_model
from .outputs import flatten_metrics, peak_memory_mb, save_outputs
from .params import PrunedParams, keep_count, select_pruned
from .pruners import PruneContext, Pruner
from .schedules import pruning_epochs, sparsity_levels

log = logging.getLogger(__name__)
SCHEDULES = ("oneshot", "gradual")


def check_sparsity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"sparsity={value!r} is not allowed; it must be a number in [0, 1)")
    return float(value)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"device={name!r} is not allowed; choose one of: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name!r} asked for CUDA, which is not available here; use device=cpu")
    return torch.device(name)


def check_compatible(net: torch.nn.Module, datamodule: PruningDataModule, model_name: str, dataset_name: str) -> None:
    """Run two samples through the model so a shape mismatch fails early with a clear message."""
    x, _ = datamodule.draw_training_samples(2, seed=0)
    try:
        with torch.no_grad():
            net.eval()(x)
    except RuntimeError as err:
        raise UserError(
            f"model {model_name} cannot take {dataset_name} inputs of shape {tuple(x.shape[1:])}: {err}"
        ) from None


def build_pruner(cfg: DictConfig, num_train: int) -> Pruner:
    pruner: Pruner = instantiate(cfg)
    needed = pruner.samples_needed()
    if needed > num_train:
        raise UserError(
            f"the pruner (n_samples x fisher_mini_bsz) needs {needed} training samples but the training set has {num_train}"
        )
    return pruner


@dataclass
class Job:
    """Everything a job is built from, validated before any long work starts."""

    cfg: DictConfig
    sparsity: float
    device: torch.device
    out_dir: Path
    datamodule: PruningDataModule
    net: torch.nn.Module
    pruned: PrunedParams
    pruner: Pruner
    logger: Logger | None

    def draw_samples(self, count: int, round: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.datamodule.draw_training_samples(count, self.cfg.seed, round)

    def recalibrate_batchnorm(self) -> None:
        """Re-estimate BatchNorm statistics on the training set when the model config asks."""
        if self.cfg.model.get("bn_recalibration"):
            recalibrate_batchnorm(self.net.to(self.device), self.datamodule.train_dataloader(), self.cfg.progress)

    def trainer(self, callbacks: list[Callback] = (), **kwargs) -> pl.Trainer:
        """A Lightning Trainer from `cfg.trainer` (user overrides pass through) and `kwargs`."""
        options = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        options.update(kwargs)
        if self.device.index is not None:
            options["devices"] = [self.device.index]
        return pl.Trainer(
            accelerator=self.device.type,
            logger=self.logger if self.logger is not None else False,
            callbacks=list(callbacks),
            enable_model_summary=False,
            enable_progress_bar=self.cfg.progress,
            default_root_dir=str(self.out_dir),
            **options,
        )


def build_job(cfg: DictConfig) -> Job:
    if cfg.schedule.name not in SCHEDULES:
        raise UserError(f"schedule={cfg.schedule.name!r} is not available; choose one of: {', '.join(SCHEDULES)}")
    sparsity = check_sparsity(cfg.sparsity)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed, verbose=False)
    overrides = {"batch_size": cfg.schedule.batch_size} if cfg.schedule.get("batch_size") else {}
    datamodule: PruningDataModule = instantiate(cfg.dataset.datamodule, **overrides)
    datamodule.setup()
    net = build_model(cfg.model)
    check_compatible(net, datamodule, cfg.model.name, cfg.dataset.name)
    pruned = select_pruned(net, cfg.model.prune.include, cfg.model.prune.exclude)
    pruned.check_finite()
    pruner = build_pruner(cfg.pruner, datamodule.num_train)
    log.info(
        "pruning %d weights in %d tensors of %s to sparsity %.4g (keep %d) with %s, %s",
        pruned.numel,
        len(pruned.names),
        cfg.model.name,
        sparsity,
        keep_count(sparsity, pruned.numel),
        pruner.name,
        cfg.schedule.name,
    )
    return Job(
        cfg, sparsity, device, Path(cfg.paths.output_dir), datamodule, net, pruned, pruner, build_logger(cfg.logger)
    )


def run(cfg: DictConfig) -> dict:
    """Run the job described by `cfg`; returns the results also written to results.json."""
    start = time.perf_counter()
    job = build_job(cfg)
    runner = run_gradual if cfg.schedule.name == "gradual" else run_oneshot
    results, trainer = runner(job)
    results["seconds"]["total"] = time.perf_counter() - start
    results["peak_memory_mb"] = peak_memory_mb()
    if trainer.is_global_zero:
        save_outputs(job.out_dir, job.net.state_dict(), results)
        metrics = flatten_metrics({k: results[k] for k in ("sparsity", "dense", "pruned", "seconds", "peak_memory_mb")})
        # Gradual runs logged their trajectory live, as training went; CHITA++ stages go now.
        series = results.get("trajectory", []) if cfg.schedule.name == "oneshot" else []
        log_run(job.logger, cfg, metrics, series)
        log.info("wrote %s", job.out_dir)
    return results


def _common_results(job: Job, dense: dict, after: dict) -> dict:
    return {
        "model": job.cfg.model.name,
        "dataset": job.cfg.dataset.name,
        "schedule": job.cfg.schedule.name,
        "pruner": job.pruner.settings(),
        "seed": job.cfg.seed,
        "device": str(job.device),
        "sparsity": {"requested": job.sparsity, "measured": job.pruned.sparsity()},
        "num_pruned_weights": job.pruned.numel,
        "num_nonzero": job.pruned.numel - job.pruned.count_zeros(),
        "dense": {"test_acc": dense["acc"], "test_loss": dense["loss"]},
        "pruned": {"test_acc": after["acc"], "test_loss": after["loss"]},
        "report": report_keys(job.cfg),
    }


def report_keys(cfg: DictConfig) -> dict:
    """The experiment preset's name and the values of the keys it sweeps as an ablation."""
    report = cfg.get("report") or {}
    ablation = {}
    for key in report.get("ablation") or []:
        value = OmegaConf.select(cfg, key)
        ablation[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return {"experiment": report.get("experiment"), "ablation": ablation}


def run_oneshot(job: Job) -> tuple[dict, pl.Trainer]:
    """Evaluate the dense model, prune it once (or in CHITA++ stages), evaluate again."""
    trainer = job.trainer(enable_checkpointing=False)
    job.recalibrate_batchnorm()
    module = Classifier(job.net, job.cfg.dataset.num_classes)
    test_loader = job.datamodule.test_dataloader()
    dense = module.evaluate(trainer, test_loader, "dense")
    log.info("dense model: test accuracy %.2f%%, loss %.4f", dense["acc"], dense["loss"])

    job.net.to(job.device).eval()
    ctx = PruneContext(
        model=job.net,
        pruned=job.pruned,
        loss_fn=loss_function(job.net),
        draw_samples=job.draw_samples,
        progress=job.cfg.progress,
        evaluate=lambda: evaluate_model(job.net, test_loader, job.cfg.dataset.num_classes),
    )
    outcome = job.pruner.prune(ctx, job.sparsity)
    job.pruned.assign(outcome.weights)
    after = module.evaluate(trainer, test_loader, "pruned")
    log.info("pruned model: test accuracy %.2f%%, loss %.4f", after["acc"], after["loss"])

    results = _common_results(job, dense, after)
    results["seconds"] = {"fisher": outcome.fisher_seconds, "solver": outcome.solver_seconds}
    results["solver"] = outcome.stats
    if "stages" in outcome.stats:
        results["trajectory"] = outcome.stats["stages"]
    return results, trainer


def run_gradual(job: Job) -> tuple[dict, pl.Trainer]:
    """Prune at scheduled epochs while fine-tuning with SGD (see `GradualPruning`)."""
    s = job.cfg.schedule
    epochs = pruning_epochs(s.first_epoch, s.prune_every, s.nprune_epochs)
    if epochs[-1] >= s.epochs:
        raise UserError(
            f"the last pruning epoch ({epochs[-1]}) must come before schedule.epochs={s.epochs}; "
            "raise schedule.epochs or lower schedule.nprune_epochs/prune_every"
        )
    levels = sparsity_levels(s.kind, s.base_level, job.sparsity, s.nprune_epochs)
    test_loader = job.datamodule.test_dataloader()
    num_classes = job.cfg.dataset.num_classes
    pruning = GradualPruning(
        pruner=job.pruner,
        epochs=epochs,
        levels=levels,
        pruned_names=job.pruned.names,
        draw_samples=job.draw_samples,
        evaluate=lambda net: evaluate_model(net, test_loader, num_classes),
        allow_regrowth=s.allow_regrowth,
        progress=job.cfg.progress,
    )
    checkpoints = ModelCheckpoint(dirpath=job.out_dir / "checkpoints", save_last=True, save_top_k=0)
    trainer = job.trainer([pruning, checkpoints], max_epochs=s.epochs)
    optim = OptimConfig(
        lr=s.lr,
        lr_min=s.lr_min,
        momentum=s.momentum,
        weight_decay=s.weight_decay,
        nesterov=s.nesterov,
        restart_epochs=epochs,
    )
    job.recalibrate_batchnorm()
    module = Classifier(job.net, num_classes, optim)
    dense = module.evaluate(trainer, test_loader, "dense")
    log.info("dense model: test accuracy %.2f%%, loss %.4f", dense["acc"], dense["loss"])
    module.train()
    trainer.fit(module, train_dataloaders=job.datamodule.train_dataloader(), ckpt_path=job.cfg.ckpt_path)
    after = module.evaluate(trainer, test_loader, "pruned")
    log.info("after gradual pruning: test accuracy %.2f%%, loss %.4f", after["acc"], after["loss"])

    results = _common_results(job, dense, after)
    results["seconds"] = {
        "fisher": sum(r["fisher_seconds"] for r in pruning.trajectory),
        "solver": sum(r["solver_seconds"] for r in pruning.trajectory),
    }
    results["trajectory"] = pruning.trajectory
    return results, trainer
