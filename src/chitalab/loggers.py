"""Experiment loggers from the `logger` config group (W&B offline by default, CSV, none)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger


def build_logger(cfg: DictConfig | None) -> Logger | None:
    """The configured Lightning logger, or None for `logger=none`."""
    if not cfg or "_target_" not in cfg:
        return None
    return instantiate(cfg)


def log_run(logger: Logger | None, config: DictConfig, metrics: dict[str, float]) -> None:
    """Record the job's config and final metrics, then close the run."""
    if logger is None:
        return
    logger.log_hyperparams(OmegaConf.to_container(config, resolve=True))
    logger.log_metrics(metrics)
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # a multirun starts a new W&B run per job
