"""MNIST from torchvision's files (local, possibly read-only, copies first; download otherwise)
or from an array file."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .images import ImageArrayDataModule, Splits

log = logging.getLogger(__name__)


# (gz file name, md5) of the four MNIST files, as torchvision's MNIST.resources lists them
# (written out: importing torchvision costs a second at start-up).
RESOURCES = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
]


def _raw_names() -> list[tuple[str, str]]:
    """(gz file name, md5) of the four MNIST files."""
    return list(RESOURCES)


def check_integrity(path: str | Path, md5: str) -> bool:
    """Whether `path` is a file with this md5 (torchvision's check_integrity)."""
    path = Path(path)
    if not path.is_file():
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == md5


def read_idx(path: Path) -> Tensor:
    """An uncompressed unsigned-byte idx file (MNIST's format) as a uint8 tensor, as
    torchvision's MNIST reads it."""
    data = path.read_bytes()
    if data[:3] != b"\x00\x00\x08":
        raise UserError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise UserError(f"{path} holds {values.size} values, its header says {shape}")
    return torch.from_numpy(values.reshape(shape).copy())


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
        eval_batch_size: int | None = None,
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
            eval_batch_size=eval_batch_size,
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
        """A folder whose MNIST/raw holds the uncompressed files, unpacking them if needed."""
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
        raise self.missing(raw)

    def download_torchvision(self) -> None:
        from torchvision.datasets import MNIST  # imported only to download

        try:
            MNIST(self.data_dir, train=True, download=True)
            MNIST(self.data_dir, train=False, download=True)
        except Exception as err:  # network or disk failure: tell the user where we looked
            raise UserError(
                f"MNIST not found in {self.raw_dir} or {self.npz_path} and the download failed ({err}); point "
                "paths.data_dir (or CHITA_DATA_DIR) at a folder with MNIST/raw or mnist.npz"
            ) from None

    def read_torchvision(self) -> Splits:
        raw = self._root() / "MNIST" / "raw"
        images = {split: read_idx(raw / f"{split}-images-idx3-ubyte") for split in ("train", "t10k")}
        labels = {split: read_idx(raw / f"{split}-labels-idx1-ubyte") for split in ("train", "t10k")}
        return (
            images["train"].float().div_(255.0).unsqueeze(1),
            labels["train"].to(torch.long),
            images["t10k"].float().div_(255.0).unsqueeze(1),
            labels["t10k"].to(torch.long),
        )
