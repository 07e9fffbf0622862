"""A resumed gradual run must have the settings of the run that wrote its checkpoint: resuming
a 0.9 checkpoint with sparsity=0.95 would otherwise end with 0.95 requested and 0.90 measured."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserError
from ..models.safe_load import describe

PRUNING_STATE = "GradualPruning"  # the callback's state key in a Lightning checkpoint


def saved_identity(ckpt_path: str) -> dict[str, Any] | None:
    """The settings stored with the pruning callback's state in `ckpt_path` (None when it has none)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read ckpt_path={ckpt_path}: {describe(err)}") from None
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
