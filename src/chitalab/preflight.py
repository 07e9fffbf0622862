"""Checks of the files a job needs that can run before torch is imported (the data root), so a
missing folder is one line in about a second instead of after seconds of imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

IMAGE_FOLDER = "chitalab.data.ImageFolderDataModule"
SPLITS = ("train", "val")


def missing_split(root: Path) -> UserError | None:
    """The error for an ImageFolder root without `train/` and `val/` (None: both are there)."""
    for split in SPLITS:
        if not (root / split).is_dir():
            return UserError(
                f"{root / split} does not exist; point dataset.datamodule.root (default: "
                "$CHITA_DATA_DIR/imagenet) at a folder with train/ and val/ holding one folder per class, "
                "or use dataset=synthetic_imagenet for a run on random 224x224 images"
            )
    return None


def check_files(cfg: DictConfig) -> None:
    """Raise the first missing data folder of the composed config (ImageNet's root)."""
    datamodule: Any = OmegaConf.select(cfg, "dataset.datamodule")
    if not isinstance(datamodule, DictConfig) or datamodule.get("_target_") != IMAGE_FOLDER:
        return
    try:
        root = Path(str(datamodule.root))
    except Exception:  # an unresolvable root is reported where the data module is built
        return
    error = missing_split(root)
    if error is not None:
        raise error
