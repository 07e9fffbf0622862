"""Logger glue: the final metrics to the experiment logger (W&B offline by default, CSV, or
none; the config was logged when it started), the model artifact, and the run closed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outputs import flatten_metrics

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger


def wandb_logger(**kwargs: Any) -> Logger:
    """Lightning's WandbLogger (`kwargs` as it takes them) without the `anonymous` key it always
    passes to `wandb.init`, which W&B answers with a deprecation note on every run."""
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(**kwargs)
    logger._wandb_init.pop("anonymous", None)
    return logger


def log_run(
    logger: Logger | None,
    metrics: dict[str, float],
    series: Sequence[dict] = (),
    out_dir: Path | None = None,
    artifact_metadata: dict[str, Any] | None = None,
) -> None:
    """Record what is left of a per-stage series (one step per entry), the final metrics and,
    on W&B, the pruned model from `out_dir` as a model artifact (the sparse checkpoint when it
    is smaller) with `artifact_metadata`, then close the run."""
    if logger is None:
        return
    from lightning.pytorch.loggers import WandbLogger  # a logger exists: Lightning is loaded already

    for step, record in enumerate(series):
        if record:
            logger.log_metrics(flatten_metrics(record, "stage/"), step=step)
    logger.log_metrics(metrics)
    if isinstance(logger, WandbLogger) and out_dir is not None:
        from ..export import log_model_artifact

        log_model_artifact(logger, out_dir, metadata=artifact_metadata)
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()  # a multirun starts a new W&B run per job


def mark_failed(logger: Logger | None) -> None:
    """Close the run of a failed job as failed (a W&B run started by then gets exit code 1)."""
    if logger is None:
        return
    from lightning.pytorch.loggers import WandbLogger

    try:
        logger.finalize("failed")
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish(exit_code=1)
    except Exception:  # never hide the job's own error behind a logger's
        pass
