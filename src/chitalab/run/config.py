"""The config reader: the one module that turns the composed Hydra config into typed objects.

Everything below it (pruners, solvers, data, models, the runs) takes typed arguments; the
trainer, optimizer, callbacks, pattern, pruner and run kind are instantiated from their
`_target_`s here.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..data import PruningDataModule
from ..errors import UserError, check_fraction, check_int, require_extra
from ..knobs import check_config, nodes
from ..models import ModelSpec
from ..outputs import dotted_keys
from ..pruning import Pruner
from .job import DeployOptions, JobConfig, PatternFactory, RunKind
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
    """Lightning's `seed_everything(seed, workers=True)` when Lightning is loaded (a gradual run's
    schedule imports it); otherwise the same seeding (Python, NumPy, torch on all devices, and
    the environment variables DDP and dataloader workers read) without the seconds of importing
    Lightning into a one-shot run."""
    if "lightning.pytorch" in sys.modules:
        from lightning.pytorch import seed_everything as lightning_seed_everything

        lightning_seed_everything(seed, workers=True)
        return
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def patterns(value: Any) -> list[str]:
    """A list of shell patterns: a single string is one pattern (not its characters)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


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
        trust_checkpoint=bool(cfg.get("trust_checkpoint", False)),
        bn_recalibration=bool(cfg.get("bn_recalibration", False)),
        bn_recalibration_samples=(None if count is None else check_int("model.bn_recalibration_samples", count, 1)),
        include=patterns(prune.get("include")) or ["*"],
        exclude=patterns(prune.get("exclude")),
    )


RESUME_KEYS = ("sparsity", "seed", "schedule", "pruner", "pattern", "model", "dataset")
"""The settings a resumed gradual run must share with the run that wrote its checkpoint."""
RESUME_IGNORED = ("schedule.callbacks", "model.trust_checkpoint", "model.checkpoint_url")


def resume_identity(cfg: DictConfig) -> dict[str, Any]:
    """The `RESUME_KEYS` settings, flattened to dotted keys, with `${paths...}` interpolations
    left unresolved (so moving the data or checkpoint folder is not a change)."""
    container = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    flat = dotted_keys({key: container.get(key) for key in RESUME_KEYS})
    return {k: v for k, v in flat.items() if not any(k == i or k.startswith(i + ".") for i in RESUME_IGNORED)}


def read_ckpt_path(value: Any, kind: RunKind) -> str | None:
    """`ckpt_path`, checked: only gradual runs resume, and the file must exist."""
    if value is None:
        return None
    if kind.name != "gradual":
        raise UserError(
            f"ckpt_path={value} resumes a gradual run, but schedule={kind.name} has no training to resume; "
            "drop ckpt_path (a one-shot run starts from model.checkpoint) or add schedule=gradual"
        )
    if not Path(str(value)).is_file():
        raise UserError(f"ckpt_path={value}: file not found (a gradual run writes <run>/checkpoints/last.ckpt)")
    return str(value)


def check_values(cfg: DictConfig) -> None:
    """The cheap part of `read_job` for a job not yet started (a multirun checks every job with
    it before the first starts): the top-level numbers, the pruner, pattern and run kind (without
    its callbacks, which need the job's folder) and `ckpt_path`. Raises the first error."""
    check_config(
        cfg
    )  # the data folders are checked by each job (a preset's jobs share them: one line, not one per job)
    instantiate(cfg.pruner)
    instantiate(cfg.pattern)
    kind: RunKind = (
        instantiate(cfg.schedule, callbacks=None) if "callbacks" in cfg.schedule else instantiate(cfg.schedule)
    )
    read_ckpt_path(cfg.get("ckpt_path"), kind)


def sample_counts(cfg: DictConfig) -> dict[str, int]:
    """Every knob that draws training samples at once, by its full key, with how many it draws:
    each gradient source's `n_samples` (times `mini_bsz`), each step search's `samples`, and the
    `samples` of a ridge choice whose pruner has a grid of λ (a single λ draws none)."""
    counts: dict[str, int] = {}
    for path, node in nodes(cfg.pruner, "pruner"):
        target = node.get("_target_")
        if target == "chitalab.fisher.GradientSource":
            mini_bsz = int(node.get("mini_bsz", 1))
            key = f"{path}.n_samples" + (f" x {path}.mini_bsz" if mini_bsz > 1 else "")
            counts[key] = int(node.n_samples) * mini_bsz
        elif target == "chitalab.pruning.StepSearch":
            counts[f"{path}.samples"] = int(node.samples)
        elif target == "chitalab.pruning.RidgeChoice":
            parent = OmegaConf.select(cfg, path.rsplit(".", 1)[0])
            l2 = parent.get("l2") if parent is not None else None
            if l2 == "auto" or (isinstance(l2, ListConfig) and len(set(l2)) > 1):
                counts[f"{path}.samples"] = int(node.samples)
    return counts


def read_logger(cfg: DictConfig) -> Callable[[], Any] | None:
    """The experiment logger's factory (None: `logger=none`); W&B's package is an extra."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    if "wandb" in str(cfg.logger._target_).lower():
        require_extra("wandb", "wandb", "logger=wandb", instead="choose logger=csv or logger=none")
    return deferred(cfg.logger)


def read_job(cfg: DictConfig) -> JobConfig:
    """Validate and instantiate the job's objects; cheap checks and the pruner come first, so bad
    values fail before data or weights are read."""
    check_config(cfg)
    sparsity = check_fraction("sparsity", cfg.sparsity)
    seed = check_int("seed", cfg.seed, 0)
    kind: RunKind = instantiate(cfg.schedule)  # first: a gradual schedule loads Lightning, which then seeds
    seed_everything(seed)  # before any object with random state is built
    pruner: Pruner = instantiate(cfg.pruner)
    pattern: PatternFactory = instantiate(cfg.pattern)
    device = resolve_device(cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", 1))
    overrides = {"batch_size": kind.batch_size} if kind.batch_size else {}
    datamodule: PruningDataModule = instantiate(cfg.dataset.datamodule, **overrides)
    return JobConfig(
        seed=seed,
        sparsity=sparsity,
        progress=bool(cfg.progress),
        out_dir=Path(cfg.paths.output_dir),
        ckpt_path=read_ckpt_path(cfg.get("ckpt_path"), kind),
        resume_identity=resume_identity(cfg),
        allow_resume_mismatch=bool(cfg.get("allow_resume_mismatch", False)),
        device=device,
        model=read_model(cfg.model),
        dataset=str(cfg.dataset.name),
        num_classes=int(cfg.dataset.num_classes),
        datamodule=datamodule,
        pruner=pruner,
        pattern=pattern,
        kind=kind,
        trainer=deferred(cfg.trainer),
        logger=read_logger(cfg),
        report=report_keys(cfg),
        deploy=instantiate(cfg.deploy) if cfg.get("deploy") else DeployOptions(latency=False),
        config=cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)),
        dense_cache=Path(cfg.paths.cache_dir) / "dense" if cfg.get("cache", {}).get("dense", False) else None,
        sample_counts=sample_counts(cfg),
    )


def read_saved_run(config_file: Path, output_dir: Path) -> tuple[ModelSpec, PruningDataModule]:
    """A finished run's model and data from its `.hydra/config.yaml`: the network with random
    weights and no checkpoint or pretrained download (its pruned.pt holds every weight), and
    the data module; paths resolve against the current environment, `output_dir` stands in for
    Hydra's runtime folder."""
    saved = OmegaConf.load(config_file)
    assert isinstance(saved, DictConfig)
    saved.paths.output_dir = str(output_dir)  # `${hydra:...}` does not resolve outside Hydra
    model = saved.model
    model.checkpoint = None
    model.pretrained = False
    if "net" in model and "pretrained" in model.net:
        model.net.pretrained = False
    return read_model(model), instantiate(saved.dataset.datamodule, _convert_="partial")
