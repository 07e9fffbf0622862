"""Loading pretrained weights from the checkpoint formats the paper's code wrote."""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..progress import on_terminal
from .safe_load import PINNED_SHA256, read_checkpoint

log = logging.getLogger(__name__)
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model")


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
    """Fetch `url` to `path` with `torch.hub.download_url_to_file` (a bar on a terminal; written
    to a temporary file, moved into place when complete) and check its pinned SHA-256 when the
    file is one of the paper's, or raise a UserError saying what failed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = PINNED_SHA256.get(path.name)
    log.info("downloading %s to %s", url, path)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=expected, progress=on_terminal())
    except RuntimeError as err:  # the hash check (the partial file is removed)
        if "invalid hash value" not in str(err):
            raise
        raise UserError(
            f"the download of {url} does not have the pinned SHA-256 {expected}; it was discarded"
        ) from None
    except OSError as err:
        raise UserError(f"checkpoint not found at {path} and downloading {url} failed ({err})") from None


def url_file_name(url: str) -> str:
    return Path(urllib.parse.urlparse(url).path).name


def load_checkpoint(model: nn.Module, path: str | Path, url: str | None = None, trust: bool = False) -> None:
    """Load weights into `model` strictly. A missing file is downloaded from `url` only when
    its name is the url's file name (the model's default checkpoint), never for another path;
    `trust` allows full unpickling (see `safe_load.read_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        if not url or path.name != url_file_name(url):
            raise UserError(f"checkpoint file not found: {path} (set model.checkpoint to an existing file)")
        download(url, path)
    obj = read_checkpoint(path, trust)
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
