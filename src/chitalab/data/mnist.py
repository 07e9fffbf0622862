"""MNIST from torchvision's files (local, possibly read-only, copies first; download otherwise)
or from an array file."""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity

from ..errors import UserError
from .images import ImageArrayDataModule, Splits

log = logging.getLogger(__name__)


def _raw_names() -> list[tuple[str, str]]:
    """(gz file name, md5) of the four MNIST files, as torchvision lists them."""
    return [(name, md5) for name, md5 in MNIST.resources]


class MNISTDataModule(ImageArrayDataModule):
    """MNIST normalised with (mean, std); inputs shaped 1x28x28.

    torchvision's files are looked for in `data_dir/MNIST/raw`. Compressed-only copies are
    unpacked into `cache_dir` (the data folder may be read-only); with no local copy and
    `download` set, torchvision downloads into `data_dir`. The array source reads
    `data_dir/mnist.npz` (Keras's file has this layout).
    """

    title = "MNIST"
    default_npz = "mnist.npz"

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        source: str = "auto",
        npz_file: str | None = None,
        download: bool = True,
        mean: float = 0.1307,
        std: float = 0.3081,
        batch_size: int = 1000,
        num_workers: int = 0,
        shuffle: bool = True,
    ):
        super().__init__(
            data_dir,
            cache_dir,
            mean,
            std,
            source=source,
            npz_file=npz_file,
            download=download,
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=shuffle,
        )

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def has_torchvision_files(self) -> bool:
        return all(
            (self.raw_dir / name).is_file() or (self.raw_dir / name.removesuffix(".gz")).is_file()
            for name, _ in _raw_names()
        )

    def _root(self) -> Path:
        """A folder whose MNIST/raw holds the uncompressed files, unpacking or downloading if needed."""
        raw = self.raw_dir
        names = _raw_names()
        if all((raw / name.removesuffix(".gz")).is_file() for name, _ in names):
            log.info("MNIST: reading torchvision's files in %s", raw)
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
            log.info("MNIST: unpacked torchvision's files in %s into %s", raw, cached)
            return self.cache_dir
        if not self.download:
            raise UserError(
                f"MNIST not found in {raw} or {self.npz_path} and dataset.download is false; set paths.data_dir"
            )
        log.info("MNIST: not found in %s or %s, downloading", raw, self.npz_path)
        try:
            MNIST(self.data_dir, train=True, download=True)
            MNIST(self.data_dir, train=False, download=True)
        except Exception as err:  # network or disk failure: tell the user where we looked
            raise UserError(
                f"MNIST not found in {raw} or {self.npz_path} and the download failed ({err}); point "
                "paths.data_dir (or CHITA_DATA_DIR) at a folder with MNIST/raw or mnist.npz"
            ) from None
        return self.data_dir

    def read_torchvision(self) -> Splits:
        root = self._root()
        train = MNIST(root, train=True, download=False)
        test = MNIST(root, train=False, download=False)
        return (
            train.data.float().div_(255.0).unsqueeze(1),
            train.targets.to(torch.long),
            test.data.float().div_(255.0).unsqueeze(1),
            test.targets.to(torch.long),
        )
