"""Logger glue: the job's config and final metrics to the experiment logger (W&B offline by
default, CSV, or none), and the run closed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..outputs import flatten_metrics

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger


def log_run(
    logger: Logger | None, config: dict[str, Any], metrics: dict[str, float], series: Sequence[dict] = ()
) -> None:
    """Record the job's config, a per-stage series (one step per entry) and the final
    metrics, then close the run."""
    if logger is None:
        return
    from pytorch_lightning.loggers import WandbLogger  # a logger exists: Lightning is loaded already

    logger.log_hyperparams(config)
    for step, record in enumerate(series):
        logger.log_metrics(flatten_metrics(record, "stage/"), step=step)
    logger.log_metrics(metrics)
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # a multirun starts a new W&B run per job
