"""Logger glue: the job's config and final metrics to the experiment logger (W&B offline by
default, CSV, or none), and the run closed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytorch_lightning.loggers import Logger, WandbLogger

from ..outputs import flatten_metrics


def log_run(
    logger: Logger | None, config: dict[str, Any], metrics: dict[str, float], series: Sequence[dict] = ()
) -> None:
    """Record the job's config, a per-stage series (one step per entry) and the final
    metrics, then close the run."""
    if logger is None:
        return
    logger.log_hyperparams(config)
    for step, record in enumerate(series):
        logger.log_metrics(flatten_metrics(record, "stage/"), step=step)
    logger.log_metrics(metrics)
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # a multirun starts a new W&B run per job


def mark_failed(logger: Logger | None) -> None:
    """Close the run of a failed job as failed (a W&B run started by then gets exit code 1)."""
    if logger is None:
        return
    try:
        logger.finalize("failed")
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish(exit_code=1)
    except Exception:  # never hide the job's own error behind a logger's
        pass
