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


def log_run(logger: Logger | None, config: DictConfig, metrics: dict[str, float], series: list[dict] = ()) -> None:
    """Record the job's config, a per-stage series (one step per entry) and the final
    metrics, then close the run."""
    if logger is None:
        return
    logger.log_hyperparams(OmegaConf.to_container(config, resolve=True))
    for step, record in enumerate(series):
        numbers = {
            f"stage/{k}": float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        logger.log_metrics(numbers, step=step)
    logger.log_metrics(metrics)
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # a multirun starts a new W&B run per job
