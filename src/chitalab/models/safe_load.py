"""Reading checkpoint files without running code from them.

`torch.load(weights_only=True)` always: its unpickler builds only tensors, containers and an
allow-list of globals. The paper's MLPNet checkpoint also names the *classes*
`torch.optim.sgd.SGD` and `torch.optim.lr_scheduler.ExponentialLR` (as `{'type': SGD}`
next to their state dicts); those names are mapped to an inert placeholder, so the file
reads without importing or calling anything. A checkpoint that needs anything else is
refused with the globals it asks for, unless the user opts in with
`model.trust_checkpoint=true` (full unpickling, after a warning).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

log = logging.getLogger(__name__)


class PickledClassName:
    """Stands in for a class a checkpoint only names (never instantiated or called)."""


INERT_GLOBALS = ("torch.optim.sgd.SGD", "torch.optim.lr_scheduler.ExponentialLR")
"""Class names the paper's checkpoints pickle as values; read as `PickledClassName`."""

PINNED_SHA256 = {
    "mnist_25_epoch_93.97.ckpt": "56083559fe28b22bf9fac71134322d7c4fe55ea5f7d6eba30b4c300783900f12",
    "resnet20_cifar10.pth.tar": "e08b9b71ee33c3abad25588ed63999501673c02f7809364e27d965399e58bf8b",
}
"""SHA-256 of the paper's checkpoints (mazumder-lab/CHITA at 89c606d), checked after a download."""

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = 0x80  # the first byte of a pickle of protocol 2 or later (legacy torch.save files)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_format(path: Path) -> None:
    """Refuse, with the reason, a file that cannot be a torch checkpoint: empty, text, a
    truncated zip archive."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise UserError(f"cannot read checkpoint {path}: the file is empty")
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except zipfile.BadZipFile as err:
            raise UserError(
                f"cannot read checkpoint {path}: not a complete torch archive ({err}; truncated?)"
            ) from None
        return
    if head[0] != PICKLE_PROTOCOL:
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "unknown binary data"
        raise UserError(f"cannot read checkpoint {path}: not a torch checkpoint (it starts with {kind}: {head!r})")


def read_checkpoint(path: Path, trust: bool = False) -> object:
    """The object in checkpoint `path`, read with `weights_only=True` (see the module doc);
    `trust=True` unpickles it fully (it can then run code) when the safe reader refuses it."""
    check_format(path)
    inert: list[Any] = [(PickledClassName, name) for name in INERT_GLOBALS]
    try:
        with torch.serialization.safe_globals(inert):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            try:
                wanted = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown"
            except Exception:
                wanted = "unknown"
            raise UserError(
                f"checkpoint {path} holds pickled Python objects that could run code when loaded ({wanted}); "
                "it was not loaded. Save a plain state dict instead, or if you trust the file set "
                "model.trust_checkpoint=true"
            ) from None
        log.warning("model.trust_checkpoint=true: fully unpickling %s (this can run code from the file)", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as full_err:
            raise UserError(f"cannot read checkpoint {path}: {describe(full_err)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"cannot read checkpoint {path}: {describe(err)}") from None


def describe(err: BaseException) -> str:
    """A one-line reason for a failed read (some torch errors have an empty or bare-number text)."""
    text = " ".join(str(err).split())
    if not text or text.isdigit():
        return f"{type(err).__name__} (truncated or not a torch checkpoint)"
    return text
