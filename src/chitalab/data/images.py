"""Small image data sets held normalised in memory, read from torchvision's files or an .npz."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UserError, choice_error
from .arrays import read_npz
from .base import TensorDataModule

log = logging.getLogger(__name__)
SOURCES = ("auto", "torchvision", "npz")
Splits = tuple[Tensor, Tensor, Tensor, Tensor]
LOADED: dict[tuple, Splits] = {}
"""The last data set loaded in this process, normalised: the jobs of a multirun share it."""


class ImageArrayDataModule(TensorDataModule):
    """An image classification set normalised with per-channel `mean` and `std`.

    `source` says where the pixels come from: `torchvision` (its files under `data_dir`,
    downloaded there when absent and `download` is set), `npz` (the array file `npz_file`,
    relative to `data_dir`; see `read_npz`), or `auto`: torchvision's files when they are
    there, else the array file when it is there, else a download. The log says which.
    """

    title = "data"  # the data set's name in log lines and errors
    default_npz = ""  # the array file looked for by default

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        mean: Sequence[float] | float,
        std: Sequence[float] | float,
        source: str = "auto",
        npz_file: str | None = None,
        download: bool = True,
        batch_size: int = 1000,
        num_workers: int = 0,
        shuffle: bool = True,
        eval_batch_size: int | None = None,
    ):
        super().__init__(batch_size, num_workers, shuffle, eval_batch_size)
        if source not in SOURCES:
            raise choice_error("source", source, SOURCES)  # the CLI adds the key (dataset.datamodule)
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.npz_path = self.data_dir / (npz_file or self.default_npz)
        self.download = download
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    @abstractmethod
    def has_torchvision_files(self) -> bool:
        """Whether torchvision's files for this set are under `data_dir`."""

    @abstractmethod
    def read_torchvision(self) -> Splits:
        """(x_train, y_train, x_test, y_test) from torchvision's files (`prepare_data` fetched
        them when absent and allowed); images as float N x C x H x W in [0, 1]."""

    @abstractmethod
    def download_torchvision(self) -> None:
        """Fetch torchvision's files into `data_dir`, or raise a UserError saying where we looked."""

    def uses_npz(self) -> bool:
        """Whether `source` selects the array file (auto: when torchvision's files are absent and it is there)."""
        return self.source == "npz" or (
            self.source == "auto" and not self.has_torchvision_files() and self.npz_path.is_file()
        )

    def prepare_data(self) -> None:
        """Download torchvision's files when the source needs them, they are absent and `download` is set."""
        if self.uses_npz() or self.has_torchvision_files() or not self.download:
            return
        log.info("%s: not found in %s or %s, downloading", self.title, self.data_dir, self.npz_path)
        self.download_torchvision()

    def missing(self, where: Path) -> UserError:
        """The error for torchvision's files absent at `setup` (not downloaded, or not allowed to be)."""
        why = "dataset.datamodule.download is false" if not self.download else "they were not downloaded (prepare_data)"
        return UserError(
            f"{self.title} not found in {where} or {self.npz_path} and {why}; point paths.data_dir "
            "(or CHITA_DATA_DIR) at a folder with torchvision's files or the array file"
        )

    def data_source(self) -> str:
        kind, where = ("array file", self.npz_path) if self.uses_npz() else ("torchvision's files", self.data_dir)
        return f"{self.title}: {kind} in {where}"

    def read_source(self) -> Splits:
        """The raw splits from the source that `source` selects, logging which one."""
        if not self.uses_npz():
            return self.read_torchvision()
        if not self.npz_path.is_file():
            raise UserError(
                f"dataset.datamodule.source=npz but {self.npz_path} does not exist; "
                "set dataset.datamodule.npz_file or paths.data_dir"
            )
        log.info("%s: reading the array file %s", self.title, self.npz_path)
        return read_npz(self.npz_path)

    def normalise(self, x: Tensor, inplace: bool = False) -> Tensor:
        """(x − mean) / std per channel, for images in [0, 1]; `inplace` overwrites x (no
        temporaries the size of the training set)."""
        if self.mean.numel() not in (1, x.shape[1]):
            raise UserError(
                f"{self.title}: {self.mean.numel()} normalisation means for images with {x.shape[1]} channels"
            )
        if inplace:
            return x.sub_(self.mean).div_(self.std)
        return (x - self.mean) / self.std

    def load(self) -> Splits:
        """The normalised splits; read once per process for the jobs of a multirun (they are
        never modified in place after this)."""
        stamp = (self.npz_path.stat().st_mtime_ns, self.npz_path.stat().st_size) if self.npz_path.is_file() else None
        normalisation = (tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist()))
        key = (type(self), self.source, self.data_dir, self.npz_path, stamp, normalisation)
        if key in LOADED:
            log.info("%s: in memory already (read by an earlier job of this process)", self.title)
            return LOADED[key]
        x_train, y_train, x_test, y_test = self.read_source()  # fresh tensors: normalised in place
        splits = self.normalise(x_train, inplace=True), y_train, self.normalise(x_test, inplace=True), y_test
        LOADED.clear()  # one data set at a time: a sweep over data sets does not pile them up
        LOADED[key] = splits
        return splits
