"""CIFAR-10 from torchvision's files or from an array file (`cifar10.npz`)."""

from __future__ import annotations

import logging

import torch

from ..errors import UserError, choice_error
from .augment import RandomCropFlip
from .images import ImageArrayDataModule, Splits

log = logging.getLogger(__name__)

# Per-channel (mean, std). "paper": what the CHITA paper's code normalises CIFAR-10 with;
# "checkpoint": what the paper's ResNet20 checkpoint was trained with (Distiller's convention).
NORMALIZATIONS = {
    "paper": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "checkpoint": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class CIFAR10DataModule(ImageArrayDataModule):
    """CIFAR-10, 3x32x32, normalised per `normalization` (a key of NORMALIZATIONS).

    torchvision's files are `data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch}`; the
    array source reads `data_dir/cifar10.npz`. With `augment`, training batches get a random
    crop after 4-pixel zero padding and a random horizontal flip.
    """

    title = "CIFAR-10"
    default_npz = "cifar10.npz"
    batch_files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    base_folder = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder

    def __init__(
        self,
        data_dir: str,
        cache_dir: str,
        source: str = "auto",
        npz_file: str | None = None,
        download: bool = True,
        normalization: str = "paper",
        augment: bool = True,
        batch_size: int = 1000,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
    ):
        if normalization not in NORMALIZATIONS:
            raise choice_error("normalization", normalization, tuple(NORMALIZATIONS))
        mean, std = NORMALIZATIONS[normalization]
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
            eval_batch_size=eval_batch_size,
        )
        self.normalization = normalization
        if augment:
            black = [-m / s for m, s in zip(mean, std)]
            self.train_transform = RandomCropFlip(padding=4, fill=black)

    def has_torchvision_files(self) -> bool:
        folder = self.data_dir / self.base_folder
        return all((folder / name).is_file() for name in self.batch_files)

    def download_torchvision(self) -> None:
        from torchvision.datasets import CIFAR10  # imported here: torchvision costs a second at start-up

        try:
            for train in (True, False):
                CIFAR10(self.data_dir, train=train, download=True)
        except Exception as err:  # no network, read-only folder
            raise UserError(
                f"CIFAR-10 not found in {self.data_dir / self.base_folder} or {self.npz_path} and the download "
                f"failed ({err}); point paths.data_dir (or CHITA_DATA_DIR) at a folder with cifar-10-batches-py "
                "or cifar10.npz"
            ) from None

    def read_torchvision(self) -> Splits:
        from torchvision.datasets import CIFAR10  # imported here: torchvision costs a second at start-up

        folder = self.data_dir / self.base_folder
        if not self.has_torchvision_files():
            raise self.missing(folder)
        log.info("CIFAR-10: reading torchvision's files in %s", folder)
        try:
            splits = [CIFAR10(self.data_dir, train=train, download=False) for train in (True, False)]
        except Exception as err:  # corrupt files
            raise UserError(f"CIFAR-10 could not be read from {folder} ({err}); replace the files") from None
        (x_train, y_train), (x_test, y_test) = [
            (
                torch.from_numpy(s.data).permute(0, 3, 1, 2).float().div_(255.0),
                torch.tensor(s.targets, dtype=torch.long),
            )
            for s in splits
        ]
        return x_train, y_train, x_test, y_test
