"""A resumed gradual run must have the settings of the run that wrote its checkpoint: resuming
a 0.9 checkpoint with sparsity=0.95 would otherwise end with 0.95 requested and 0.90 measured."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..models.safe_load import PICKLE_PROTOCOL, ZIP_MAGIC, describe
from ..training.checkpoint import checksum_file, verify_checksum

log = logging.getLogger(__name__)

PRUNING_STATE = "GradualPruning"  # the callback's state key in a Lightning checkpoint


RESUME_HINT = "give the last.ckpt of a chitalab gradual run (<run>/checkpoints/last.ckpt)"


def unreadable(ckpt_path: str, what: str, details: str | None = None) -> UserError:
    """The short message for a resume file that cannot be used: what is wrong, what to do; a
    library's long explanation goes to the log file only."""
    return UserError(f"cannot resume from ckpt_path={ckpt_path}: {what}; {RESUME_HINT}", details=details)


def read_resume_file(ckpt_path: str) -> Any:
    """The checkpoint in `ckpt_path`, checked against its checksum file and read with
    `weights_only=True`; a short UserError when it was altered, is empty, text, truncated or
    holds pickled objects."""
    path = Path(ckpt_path)
    intact = verify_checksum(path)
    if intact is False:
        raise UserError(
            f"ckpt_path={ckpt_path} fails its checksum ({checksum_file(path).name}): the file changed after the run "
            "wrote it; resume from an intact copy, or start the run again"
        )
    if intact is None:
        log.warning(
            "ckpt_path=%s has no checksum file (%s); resuming without checking it", ckpt_path, checksum_file(path).name
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise unreadable(ckpt_path, "the file is empty")
    if head != ZIP_MAGIC and head[0] != PICKLE_PROTOCOL:
        kind = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "not a torch checkpoint"
        raise unreadable(ckpt_path, f"{kind} (it starts with {head!r})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            wanted = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown objects"
        except Exception:
            wanted = "unknown objects"
        raise unreadable(
            ckpt_path, f"it holds pickled Python objects ({wanted}), which a resume never unpickles", describe(err)
        ) from None
    except Exception as err:
        raise unreadable(ckpt_path, "the file is truncated or not a torch checkpoint", describe(err)) from None


def saved_identity(ckpt_path: str) -> dict[str, Any] | None:
    """The settings stored with the pruning callback's state in `ckpt_path` (None when it has none)."""
    checkpoint = read_resume_file(ckpt_path)
    callbacks = checkpoint.get("callbacks", {}) if isinstance(checkpoint, dict) else {}
    for key, state in callbacks.items():
        if str(key).startswith(PRUNING_STATE) and isinstance(state, dict):
            return state.get("config")
    raise UserError(f"ckpt_path={ckpt_path} holds no gradual-pruning state; is it a chitalab gradual run's last.ckpt?")


def mismatches(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key (checkpoint X, now Y)' for every setting that differs."""
    missing = object()
    out = []
    for key in sorted(set(saved) | set(current)):
        before, now = saved.get(key, missing), current.get(key, missing)
        if before != now:
            show = lambda v: "unset" if v is missing else repr(v)  # noqa: E731
            out.append(f"{key} (checkpoint {show(before)}, now {show(now)})")
    return out


def check_resume(ckpt_path: str, current: dict[str, Any], allow_mismatch: bool) -> None:
    """Refuse to resume from `ckpt_path` with other settings, naming them, unless allowed."""
    saved = saved_identity(ckpt_path)
    if saved is None:
        return  # a checkpoint from before settings were stored: nothing to compare
    differ = mismatches(saved, current)
    if differ and not allow_mismatch:
        shown = "; ".join(differ[:6]) + (f"; and {len(differ) - 6} more" if len(differ) > 6 else "")
        raise UserError(
            f"ckpt_path={ckpt_path} was written with other settings: {shown}. Resume with the checkpoint's "
            "values, or add allow_resume_mismatch=true to resume anyway"
        )
