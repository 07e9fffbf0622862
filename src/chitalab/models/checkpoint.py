"""Loading pretrained weights from the checkpoint formats the paper's code wrote."""

from __future__ import annotations

import logging
import pickle
import urllib.request
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError

log = logging.getLogger(__name__)
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model")


def _read(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The paper's MLPNet checkpoint pickles optimizer and scheduler objects, which
        # weights_only=True refuses. Full unpickling can run code, so it is done only for
        # a file the user named in model.checkpoint, never for a discovered one.
        log.warning("%s holds pickled Python objects; loading it with weights_only=False", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def extract_state_dict(obj: object) -> dict[str, Tensor]:
    """The model weights inside a checkpoint, in plain `nn.Module.state_dict()` form.

    Handles nesting under model_state_dict/state_dict/model, the `module.` prefix of
    DataParallel, and the CHITA wrappers `X._layer.weight` with `X._weight_mask`
    (the mask is applied and dropped).
    """
    for key in STATE_DICT_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError("checkpoint holds no state dict (looked for the keys " + ", ".join(STATE_DICT_KEYS) + ")")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith("._weight_mask"):
            continue
        if "._layer." in key:
            mask = state.get(key.split("._layer.")[0] + "._weight_mask")
            key = key.replace("._layer.", ".")
            if mask is not None and key.endswith(".weight"):
                value = value * mask
        out[key] = value
    return out


def download(url: str, path: Path) -> None:
    """Fetch `url` to `path` (atomically), or raise a UserError saying what failed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    log.info("downloading %s to %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as f:
            f.write(response.read())
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise UserError(f"checkpoint not found at {path} and downloading {url} failed ({err})") from None
    partial.replace(path)


def load_checkpoint(model: nn.Module, path: str | Path, url: str | None = None) -> None:
    """Load weights into `model` strictly; a missing file is downloaded from `url` if given."""
    path = Path(path)
    if not path.is_file():
        if not url:
            raise UserError(f"checkpoint file not found: {path} (set model.checkpoint to an existing file)")
        download(url, path)
    try:
        obj = _read(path)
    except Exception as err:  # any unreadable file is the user's input problem
        raise UserError(f"cannot read checkpoint {path}: {err}") from None
    state = extract_state_dict(obj)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong_shape:
            parts.append(f"shape mismatch (checkpoint vs model) {wrong_shape[:5]}")
        raise UserError(f"checkpoint {path} does not match the model: " + "; ".join(parts))
    model.load_state_dict(state)
