"""ImageNet (or any data set in ImageFolder layout) read from image files on the fly."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from ..errors import UserError, check_choice
from ..preflight import missing_split
from .base import EpochShuffle, PruningDataModule

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderDataModule(PruningDataModule):
    """`root/train/<class>/<image>` and `root/val/<class>/<image>` with the standard transforms:
    training batches get RandomResizedCrop(image_size) + horizontal flip; evaluation and the
    Fisher samples get Resize(resize) + CenterCrop(image_size). Both are normalised with
    (mean, std). `preprocessing="model"`: a timm model's own data config replaces these
    (`timm.data.resolve_model_data_config` + `create_transform`: its size, crop fraction,
    interpolation, mean and std); other models keep the fixed ones."""

    def __init__(
        self,
        root: str,
        num_classes: int,
        image_size: int = 224,
        resize: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 256,
        num_workers: int = 8,
        preprocessing: str = "fixed",
    ):
        super().__init__(batch_size, num_workers)
        self.preprocessing = check_choice("preprocessing", preprocessing, ("fixed", "model"))
        self.root = Path(root)
        self.num_classes = num_classes
        normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        self.train_transform = transforms.Compose(
            [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), *normalize]
        )
        self.eval_transform = transforms.Compose(
            [transforms.Resize(resize), transforms.CenterCrop(image_size), *normalize]
        )
        missing = missing_split(self.root)  # at construction: before the model is built (seconds for a timm one)
        if missing is not None:
            raise missing
        self.train_set: ImageFolder | None = None
        self.fisher_set: ImageFolder | None = None
        self.val_set: ImageFolder | None = None

    def data_source(self) -> str:
        return f"ImageFolder {self.root} ({self.preprocessing} preprocessing)"

    def adapt_to(self, net: nn.Module) -> None:
        """With `preprocessing="model"` and a timm model (it carries `pretrained_cfg`), use timm's
        evaluation and training transforms for it."""
        if self.preprocessing != "model" or not getattr(net, "pretrained_cfg", None):
            return
        from timm.data import create_transform, resolve_model_data_config

        config = resolve_model_data_config(net)
        self.eval_transform = create_transform(**config)
        self.train_transform = create_transform(**config, is_training=True)
        log.info("ImageFolder: timm's data config for the model: %s", config)

    def _folder(self, split: str, transform) -> ImageFolder:
        path = self.root / split
        try:
            folder = ImageFolder(str(path), transform)
        except (FileNotFoundError, OSError) as err:
            raise UserError(f"cannot read images under {path}: {err}") from None
        if len(folder.classes) != self.num_classes:
            raise UserError(
                f"{path} has {len(folder.classes)} class folders but dataset.num_classes={self.num_classes}"
            )
        return folder

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._folder("train", self.train_transform)
            self.val_set = self._folder("val", self.eval_transform)
            self.fisher_set = copy.copy(self.train_set)  # the same file list, seen as at evaluation
            self.fisher_set.transform = self.eval_transform
            log.info(
                "ImageFolder %s: %d training and %d validation images",
                self.root,
                len(self.train_set),
                len(self.val_set),
            )

    def _sets(self) -> tuple[ImageFolder, ImageFolder, ImageFolder]:
        """The (train, val, Fisher) folders, read on first use."""
        self.setup()
        assert self.train_set is not None and self.val_set is not None and self.fisher_set is not None
        return self.train_set, self.val_set, self.fisher_set

    @property
    def num_train(self) -> int:
        return len(self._sets()[0])

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        sampler = EpochShuffle(len(dataset)) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._sets()[0], shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._sets()[1], shuffle=False)

    def training_batches(self, index: Tensor) -> DataLoader:
        return self._loader(Subset(self._sets()[0], index.tolist()), shuffle=False)

    def training_samples(self, index: Tensor) -> tuple[Tensor, Tensor]:
        batches = list(self._loader(Subset(self._sets()[2], index.tolist()), shuffle=False))
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
