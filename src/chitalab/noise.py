"""Known third-party noise kept off the terminal: Lightning's start-up notes (accelerators, the
litlogger tip, `Seed set to`), W&B's banner (the run's folder is logged instead; the
`anonymous` note: `run.loggers.wandb_logger`), and warnings about library internals a user
cannot act on."""

from __future__ import annotations

import logging
import os
import warnings

QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",  # rank_zero_info: accelerators, the tip, `Trainer.fit stopped`
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",  # `Seed set to 0`
)
"""Loggers kept to warnings and errors (Lightning's warnings go through `warnings`, not these)."""
IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


def quiet_third_party() -> None:
    """Filter the known noise (`WANDB_SILENT=false` brings W&B's own output back)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
