"""Lightning data modules."""

from .base import TensorDataModule
from .mnist import MNISTDataModule
from .synthetic import SyntheticDataModule

__all__ = ["MNISTDataModule", "SyntheticDataModule", "TensorDataModule"]
