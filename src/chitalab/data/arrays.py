"""The generic array source: a data set stored as an .npz with x_train, y_train, x_test, y_test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _images(array: np.ndarray, name: str, path: Path) -> Tensor:
    """N x H x W (grey) or N x H x W x C images, uint8 in 0..255 or float in [0, 1], as float
    N x C x H x W in [0, 1]."""
    if array.ndim not in (3, 4):
        raise UserError(f"{path}: {name} has shape {array.shape}; expected N x H x W or N x H x W x C images")
    x = torch.from_numpy(array)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise UserError(f"{path}: {name} has dtype {array.dtype}; expected uint8 (0-255) or float in [0, 1]")
    return x.float()


def read_npz(path: str | Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) from `path`: images as float N x C x H x W in [0, 1]
    (Keras's layout, N x H x W[ x C], is what the file holds), labels as int64."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise UserError(f"{path} lacks the arrays {', '.join(missing)} (needs {', '.join(NPZ_KEYS)})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} as an .npz file: {err}") from None
    splits = []
    for split in ("train", "test"):
        x = _images(arrays[f"x_{split}"], f"x_{split}", path)
        y = torch.from_numpy(arrays[f"y_{split}"].reshape(-1).astype(np.int64))
        if len(x) != len(y):
            raise UserError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        splits += [x, y]
    if splits[0].shape[1:] != splits[2].shape[1:]:
        raise UserError(
            f"{path}: train images {tuple(splits[0].shape[1:])} and test images {tuple(splits[2].shape[1:])} differ in shape"
        )
    x_train, y_train, x_test, y_test = splits
    return x_train, y_train, x_test, y_test
