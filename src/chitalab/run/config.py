"""The config reader: the one module that turns the composed Hydra config into typed objects.

Everything below it (pruners, solvers, data, models, the runs) takes typed arguments; the
trainer, optimizer, callbacks, pattern, pruner and run kind are instantiated from their
`_target_`s here.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data import PruningDataModule
from ..errors import UserError, check_fraction, check_int
from ..models import ModelSpec
from ..pruning import Pruner
from .job import JobConfig, PatternFactory, RunKind
from .results import ReportKeys


def resolve_device(accelerator: str, devices: Any) -> torch.device:
    """The torch device of the job, from the trainer's `accelerator` and `devices` (the one source
    of truth, also for Lightning): auto picks CUDA when available; a device list names the GPU."""
    accelerators = ("auto", "cpu", "gpu", "cuda")
    if accelerator not in accelerators:
        raise UserError(f"trainer.accelerator={accelerator!r} is not allowed; choose one of: {', '.join(accelerators)}")
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} asked for CUDA, which is not available here; use trainer.accelerator=cpu"
        )
    index = devices[0] if isinstance(devices, (list, tuple)) and devices else 0
    return torch.device("cuda", int(index))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, as Lightning's `seed_everything` does
    (also its environment variables, which DDP workers read), without importing Lightning."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = "0"
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # all devices


def deferred(cfg: DictConfig) -> Callable[..., Any]:
    """A `_partial_` config (the trainer, the logger) instantiated when first called, so its
    module (Lightning, W&B) is imported only by the jobs that use it; keyword arguments are
    passed on."""

    def build(**kwargs: Any) -> Any:
        made = instantiate(cfg)
        return made(**kwargs) if callable(made) and OmegaConf.select(cfg, "_partial_") else made

    return build


def report_keys(cfg: DictConfig) -> ReportKeys:
    """The experiment preset's name and the values of the keys it sweeps as an ablation."""
    report = cfg.get("report") or {}
    ablation = {}
    for key in report.get("ablation") or []:
        value = OmegaConf.select(cfg, key)
        ablation[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return ReportKeys(experiment=report.get("experiment"), ablation=ablation)


def read_model(cfg: DictConfig) -> ModelSpec:
    """`cfg.model` as a ModelSpec (its network instantiated with random weights)."""
    if cfg.get("pretrained") and cfg.get("checkpoint"):
        raise UserError("model.pretrained=true and model.checkpoint are both set; choose one weight source")
    prune = cfg.get("prune") or {}
    count = cfg.get("bn_recalibration_samples")
    return ModelSpec(
        name=str(cfg.name),
        net=instantiate(cfg.net),
        checkpoint=cfg.get("checkpoint"),
        checkpoint_url=cfg.get("checkpoint_url"),
        pretrained=bool(cfg.get("pretrained", False)),
        bn_recalibration=bool(cfg.get("bn_recalibration", False)),
        bn_recalibration_samples=(None if count is None else check_int("model.bn_recalibration_samples", count, 1)),
        include=list(prune.get("include") or ["*"]),
        exclude=list(prune.get("exclude") or []),
    )


def read_job(cfg: DictConfig) -> JobConfig:
    """Validate and instantiate the job's objects; cheap checks and the pruner come first, so bad
    values fail before data or weights are read."""
    sparsity = check_fraction("sparsity", cfg.sparsity)
    seed = check_int("seed", cfg.seed, 0)
    seed_everything(seed)  # before any object with random state is built
    pruner: Pruner = instantiate(cfg.pruner)
    kind: RunKind = instantiate(cfg.schedule)
    pattern: PatternFactory = instantiate(cfg.pattern)
    device = resolve_device(cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", 1))
    overrides = {"batch_size": kind.batch_size} if kind.batch_size else {}
    datamodule: PruningDataModule = instantiate(cfg.dataset.datamodule, **overrides)
    return JobConfig(
        seed=seed,
        sparsity=sparsity,
        progress=bool(cfg.progress),
        out_dir=Path(cfg.paths.output_dir),
        ckpt_path=cfg.get("ckpt_path"),
        device=device,
        model=read_model(cfg.model),
        dataset=str(cfg.dataset.name),
        num_classes=int(cfg.dataset.num_classes),
        datamodule=datamodule,
        pruner=pruner,
        pattern=pattern,
        kind=kind,
        trainer=deferred(cfg.trainer),
        logger=deferred(cfg.logger) if cfg.get("logger") and "_target_" in cfg.logger else None,
        report=report_keys(cfg),
        config=cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)),
    )
