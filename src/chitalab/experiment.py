"""Builds everything from the Hydra config and runs one pruning job."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from .batchnorm import recalibrate_batchnorm
from .data import PruningDataModule
from .errors import UserError
from .loggers import build_logger, log_run
from .models import build_model, loss_function
from .module import Classifier
from .outputs import flatten_metrics, peak_memory_mb, save_outputs
from .params import PrunedParams, keep_count, select_pruned
from .pruners import PruneContext, Pruner

log = logging.getLogger(__name__)
SCHEDULES = ("oneshot",)


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
            f"pruner.n_samples={cfg.n_samples} x fisher_mini_bsz={cfg.get('fisher_mini_bsz', 1)} needs {needed} "
            f"training samples but the training set has {num_train}"
        )
    return pruner


def run(cfg: DictConfig) -> dict:
    """Run the job described by `cfg`; returns the results also written to results.json."""
    if cfg.schedule.name not in SCHEDULES:
        raise UserError(f"schedule={cfg.schedule.name!r} is not available; choose one of: {', '.join(SCHEDULES)}")
    return run_oneshot(cfg)


def run_oneshot(cfg: DictConfig) -> dict:
    """Evaluate the dense model, prune it once, evaluate again, and save everything."""
    start = time.perf_counter()
    sparsity = check_sparsity(cfg.sparsity)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed, verbose=False)
    out_dir = Path(cfg.paths.output_dir)

    datamodule: PruningDataModule = instantiate(cfg.dataset.datamodule)
    datamodule.setup()
    net = build_model(cfg.model)
    check_compatible(net, datamodule, cfg.model.name, cfg.dataset.name)
    pruned: PrunedParams = select_pruned(net, cfg.model.prune.include, cfg.model.prune.exclude)
    pruned.check_finite()
    pruner = build_pruner(cfg.pruner, datamodule.num_train)
    log.info(
        "pruning %d weights in %d tensors of %s to sparsity %.4g (keep %d) with %s",
        pruned.numel, len(pruned.names), cfg.model.name, sparsity, keep_count(sparsity, pruned.numel), pruner.name,
    )

    logger = build_logger(cfg.logger)
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress,
        default_root_dir=str(out_dir),
    )
    if cfg.model.get("bn_recalibration"):
        recalibrate_batchnorm(net.to(device), datamodule.train_dataloader(), cfg.progress)
    module = Classifier(net, cfg.dataset.num_classes)
    test_loader = datamodule.test_dataloader()
    dense = module.evaluate(trainer, test_loader, "dense")
    log.info("dense model: test accuracy %.2f%%, loss %.4f", dense["acc"], dense["loss"])

    net.to(device).eval()
    ctx = PruneContext(
        model=net,
        pruned=pruned,
        loss_fn=loss_function(net),
        draw_samples=lambda count: datamodule.draw_training_samples(count, cfg.seed),
        progress=cfg.progress,
    )
    outcome = pruner.prune(ctx, sparsity)
    pruned.assign(outcome.weights)
    after = module.evaluate(trainer, test_loader, "pruned")
    log.info("pruned model: test accuracy %.2f%%, loss %.4f", after["acc"], after["loss"])

    results = {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "schedule": cfg.schedule.name,
        "pruner": pruner.settings(),
        "seed": cfg.seed,
        "device": str(device),
        "sparsity": {"requested": sparsity, "measured": pruned.sparsity()},
        "num_pruned_weights": pruned.numel,
        "num_nonzero": pruned.numel - pruned.count_zeros(),
        "dense": {"test_acc": dense["acc"], "test_loss": dense["loss"]},
        "pruned": {"test_acc": after["acc"], "test_loss": after["loss"]},
        "seconds": {
            "fisher": outcome.fisher_seconds,
            "solver": outcome.solver_seconds,
            "total": time.perf_counter() - start,
        },
        "peak_memory_mb": peak_memory_mb(),
        "solver": outcome.stats,
    }
    save_outputs(out_dir, net.state_dict(), results)
    log_run(logger, cfg, flatten_metrics({k: results[k] for k in ("sparsity", "dense", "pruned", "seconds", "peak_memory_mb")}))
    log.info("wrote %s", out_dir)
    return results
