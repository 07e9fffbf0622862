"""MNIST from torchvision's files: local (possibly read-only) copies first, download otherwise."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity

from ..errors import UserError
from .base import TensorDataModule

log = logging.getLogger(__name__)


def _raw_names() -> list[tuple[str, str]]:
    """(gz file name, md5) of the four MNIST files, as torchvision lists them."""
    return [(name, md5) for name, md5 in MNIST.resources]


class MNISTDataModule(TensorDataModule):
    """MNIST normalised with (mean, std); inputs shaped 1x28x28.

    Looks in `data_dir/MNIST/raw` for torchvision's files. Compressed-only copies are
    unpacked into `cache_dir` (the data folder may be read-only); with no local copy
    and `download` set, torchvision downloads into `data_dir`.
    """

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        download: bool = True,
        mean: float = 0.1307,
        std: float = 0.3081,
        batch_size: int = 1000,
        num_workers: int = 0,
        shuffle: bool = True,
    ):
        super().__init__(batch_size, num_workers, shuffle)
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.download = download
        self.mean = mean
        self.std = std

    def _root(self) -> Path:
        """A folder whose MNIST/raw holds the uncompressed files, unpacking or downloading if needed."""
        raw = self.data_dir / "MNIST" / "raw"
        names = _raw_names()
        if all((raw / name.removesuffix(".gz")).is_file() for name, _ in names):
            log.info("MNIST: reading %s", raw)
            return self.data_dir
        if all((raw / name).is_file() for name, _ in names):
            cached = self.cache_dir / "MNIST" / "raw"
            cached.mkdir(parents=True, exist_ok=True)
            for name, md5 in names:
                target = cached / name.removesuffix(".gz")
                if target.is_file():
                    continue
                if not check_integrity(str(raw / name), md5):
                    raise UserError(f"MNIST file {raw / name} fails its md5 check ({md5}); replace it")
                partial = target.with_suffix(".part")
                with gzip.open(raw / name, "rb") as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                partial.replace(target)
            log.info("MNIST: unpacked %s into %s", raw, cached)
            return self.cache_dir
        if not self.download:
            raise UserError(f"MNIST not found in {raw} and dataset.download is false; set paths.data_dir")
        log.info("MNIST: not found in %s, downloading", raw)
        try:
            MNIST(self.data_dir, train=True, download=True)
            MNIST(self.data_dir, train=False, download=True)
        except Exception as err:  # network or disk failure: tell the user where we looked
            raise UserError(
                f"MNIST not found in {raw} and the download failed ({err}); point paths.data_dir "
                "(or CHITA_DATA_DIR) at a folder with MNIST/raw"
            ) from None
        return self.data_dir

    def _normalise(self, images: Tensor) -> Tensor:
        return ((images.float() / 255.0 - self.mean) / self.std).unsqueeze(1)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        root = self._root()
        train = MNIST(root, train=True, download=False)
        test = MNIST(root, train=False, download=False)
        return (
            self._normalise(train.data),
            train.targets.to(torch.long),
            self._normalise(test.data),
            test.targets.to(torch.long),
        )
