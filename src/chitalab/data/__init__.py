"""Data modules. Names are imported on first use (PEP 562): a job reads only its own data
module's file (ImageNet's brings torchvision's transforms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .arrays import read_npz
    from .base import PruningDataModule, TensorDataModule
    from .cifar10 import CIFAR10DataModule
    from .imagenet import ImageFolderDataModule
    from .images import ImageArrayDataModule
    from .mnist import MNISTDataModule
    from .synthetic import SyntheticDataModule

_WHERE = {
    "CIFAR10DataModule": "cifar10",
    "ImageArrayDataModule": "images",
    "ImageFolderDataModule": "imagenet",
    "MNISTDataModule": "mnist",
    "PruningDataModule": "base",
    "SyntheticDataModule": "synthetic",
    "TensorDataModule": "base",
    "read_npz": "arrays",
}

__all__ = [
    "CIFAR10DataModule",
    "ImageArrayDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "PruningDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
    "read_npz",
]


__getattr__ = lazy_getattr(__name__, _WHERE)
