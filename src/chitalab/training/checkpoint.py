"""The resume checkpoint of a gradual run: `last.ckpt`, written atomically at every epoch
boundary and right after every pruning step, whatever Lightning's own `ModelCheckpoint` does.

Both saves happen in `on_train_epoch_start` (the epoch boundary one before the pruning
callback runs, the pruning one from its `after_step` hook), a point Lightning restarts from
cleanly: resuming runs that epoch from its first batch with the restored weights, masks,
optimizer and schedule. A checkpoint taken mid-epoch could not be resumed exactly (the data
loader's position is not saved), so none is written there; a run stopped mid-epoch resumes
from the start of that epoch. The last save is at the end of training.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from ..models.safe_load import sha256

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.ckpt"


class LastCheckpoint(pl.Callback):
    """Keep `<dirpath>/last.ckpt` current (see the module doc). Not a Lightning `Checkpoint`
    subclass on purpose: Lightning moves those after every other callback, and this one must
    save before the pruning callback of the same hook."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)
        self._at_epoch_start = False

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    def save(self, trainer: pl.Trainer) -> None:
        """Write last.ckpt through a `.part` file and a rename (on every rank: the save is collective);
        called at an epoch start (before or after its pruning step)."""
        self._at_epoch_start = True
        try:
            self._write(trainer)
        finally:
            self._at_epoch_start = False

    def _write(self, trainer: pl.Trainer) -> None:
        partial = self.path.with_name(LAST_CHECKPOINT + ".part")
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        try:
            trainer.save_checkpoint(partial, weights_only=False)  # the full state: a resume needs it
            if trainer.is_global_zero:
                record_checksum(partial, self.path)
                os.replace(partial, self.path)
        except BaseException:
            if trainer.is_global_zero:
                partial.unlink(missing_ok=True)
            raise
        log.debug("saved %s at epoch %d", self.path, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """At an epoch start the epoch loop's counters still describe the previous epoch (Lightning
        resets them only once the epoch's first batch is fetched); saved as they are, a resume
        would take the new epoch as finished after one batch. Zero them, as that reset does."""
        if not self._at_epoch_start:
            return
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        for key, progress in fit_loop.items():
            if (
                key.startswith("epoch_loop.")
                and not key.startswith("epoch_loop.val_loop")
                and isinstance(progress, dict)
            ):
                zero_current(progress)


CHECKSUM_SUFFIX = ".sha256"


def checksum_file(path: Path) -> Path:
    """Where the SHA-256 of checkpoint `path` is kept: `<path>.sha256`, beside it."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def record_checksum(written: Path, final: Path) -> None:
    """Record the SHA-256 of `written` (the `.part` file about to be renamed to `final`) in
    `final`'s checksum file, keeping the previous one too: a kill between this write and the
    rename leaves the old checkpoint, whose digest is still listed, so a resume still passes."""
    digest = sha256(written)
    record = checksum_file(final)
    try:
        previous = json.loads(record.read_text()).get("sha256", [])[:1]
    except (OSError, ValueError, AttributeError):
        previous = []
    partial = record.with_name(record.name + ".part")
    partial.write_text(json.dumps({"sha256": [digest, *previous]}) + "\n")
    os.replace(partial, record)


def verify_checksum(path: Path) -> bool | None:
    """Whether checkpoint `path` has a digest its checksum file lists (None: no checksum file)."""
    record = checksum_file(path)
    if not record.is_file():
        return None
    try:
        listed = json.loads(record.read_text()).get("sha256", [])
    except (OSError, ValueError, AttributeError):
        return False
    return sha256(path) in listed


def zero_current(progress: dict[str, Any]) -> None:
    """Set every `current` counter in a (nested) Lightning progress dict to 0."""
    for key, value in progress.items():
        if key == "current" and isinstance(value, dict):
            progress[key] = {name: 0 for name in value}
        elif key == "is_last_batch":
            progress[key] = False
        elif isinstance(value, dict):
            zero_current(value)
