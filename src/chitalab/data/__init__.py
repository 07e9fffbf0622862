"""Lightning data modules."""

from .arrays import read_npz
from .base import PruningDataModule, TensorDataModule
from .cifar10 import CIFAR10DataModule
from .imagenet import ImageFolderDataModule
from .images import ImageArrayDataModule
from .mnist import MNISTDataModule
from .synthetic import SyntheticDataModule

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
