"""What an experiment needs from a data set, and data modules that hold theirs in memory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler, TensorDataset

from ..errors import check_int

BatchTransform = Callable[[Tensor], Tensor]


def augmented_batch(augment: BatchTransform, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Augment the inputs of a batch fetched whole (module-level, so loader workers can pickle it)."""
    x, y = batch
    return augment(x), y


class EpochShuffle(Sampler[int]):
    """A random order of `size` indices that depends only on `seed` and the epoch Lightning sets
    (`set_epoch`), not on the global random state: a resumed run sees the same batches as an
    uninterrupted one. `seed` defaults to the run's (`torch.initial_seed()` after seeding)."""

    def __init__(self, size: int, seed: int | None = None):
        self.size = size
        self.seed = torch.initial_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=gen).tolist())


class EpochBatches(BatchSampler):
    """Batches of indices from `sampler`, passing Lightning's `set_epoch` on to it (Lightning
    calls it on the loader's sampler, which is this one when batches are fetched whole)."""

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def batched_loader(
    dataset: TensorDataset, batch_size: int, shuffle: bool, num_workers: int, transform: BatchTransform | None
) -> DataLoader:
    """Batches of an in-memory data set fetched whole: one indexing of the tensors per batch
    instead of one per sample and a stack. Shuffled in the order of `EpochShuffle`, so a
    resumed run sees the same batches."""
    sampler: Sampler[int] = EpochShuffle(len(dataset)) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=EpochBatches(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=partial(augmented_batch, transform) if transform is not None else None,
    )


class PruningDataModule(ABC):
    """Train and test loaders, the training-set size, and random training samples as tensors
    (the Fisher samples). Subclasses hold the data in memory or read it from files. A plain
    class, not a LightningDataModule: the runs hand loaders to the Trainer, and a one-shot job
    then never imports Lightning."""

    def __init__(self, batch_size: int, num_workers: int = 0, shuffle: bool = True, eval_batch_size: int | None = None):
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        # test batches: inference has its own best size (smaller batches stay in the CPU's caches)
        self.eval_batch_size = (
            batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, 1)
        )

    def prepare_data(self) -> None:  # noqa: B027 (a hook; the default does nothing)
        """Download what is missing, once per machine (Lightning's convention: only local rank 0
        calls it, before any rank's `setup`); the default has nothing to fetch."""

    def data_source(self) -> str:
        """Where the data was read from, for results.json's provenance (after `setup`)."""
        return type(self).__name__

    def adapt_to(self, net: nn.Module) -> None:  # noqa: B027 (a hook; the default does nothing)
        """Take the model's own input preprocessing, before `setup` (the default keeps this module's)."""

    def setup(self, stage: str | None = None) -> None:  # noqa: B027 (a hook; the default does nothing)
        """Read or index the data (idempotent); the data is otherwise read on first use."""

    @property
    @abstractmethod
    def num_train(self) -> int:
        """Number of training samples."""

    def draw_training_samples(self, count: int, seed: int, round: int = 0) -> tuple[Tensor, Tensor]:
        """`count` distinct training samples chosen at random, as the model sees them at
        evaluation (no augmentation); reproducible through `seed`, and a different draw for
        each `round` (pruning stage or step)."""
        if count > self.num_train:
            raise ValueError(f"asked for {count} samples, the training set has {self.num_train}")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + round)
        return self.training_samples(torch.randperm(self.num_train, generator=gen)[:count])

    @abstractmethod
    def training_samples(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The training samples at `index`, stacked, without augmentation."""

    @abstractmethod
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, augmented when the data set defines an augmentation."""

    @abstractmethod
    def training_batches(self, index: Tensor) -> Iterable[tuple[Tensor, Tensor]]:
        """The training samples at `index`, in that order, in batches of `batch_size` and
        augmented as the training batches are (a subset of the training pass, e.g. for the
        BatchNorm re-estimation)."""

    @abstractmethod
    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order."""


class TensorDataModule(PruningDataModule):
    """Train and test splits as in-memory tensors; subclasses implement `load`.

    Keeping the pixels normalised in memory makes evaluation and Fisher sampling fast
    for MNIST/CIFAR-sized data (no per-sample PIL transforms). `train_transform`, when a
    subclass sets it, augments each training batch (on tensors) in `train_dataloader`.
    """

    train_transform: BatchTransform | None = None

    def __init__(
        self, batch_size: int = 1000, num_workers: int = 0, shuffle: bool = True, eval_batch_size: int | None = None
    ):
        super().__init__(batch_size, num_workers, shuffle, eval_batch_size)
        self.train_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return normalised (x_train, y_train, x_test, y_test)."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            x_train, y_train, x_test, y_test = self.load()
            self.train_set = TensorDataset(x_train, y_train)
            self.test_set = TensorDataset(x_test, y_test)

    def splits(self) -> tuple[TensorDataset, TensorDataset]:
        """The (train, test) sets, loaded on first use."""
        self.setup()
        assert self.train_set is not None and self.test_set is not None
        return self.train_set, self.test_set

    @property
    def num_train(self) -> int:
        return len(self.splits()[0])

    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.splits()[0].tensors[0].shape[1:])

    def train_dataloader(self) -> DataLoader:
        return batched_loader(self.splits()[0], self.batch_size, self.shuffle, self.num_workers, self.train_transform)

    def test_dataloader(self) -> DataLoader:
        return batched_loader(self.splits()[1], self.eval_batch_size, False, self.num_workers, None)

    def training_batches(self, index: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.splits()[0].tensors
        for start in range(0, len(index), self.batch_size):
            chunk = index[start : start + self.batch_size]
            xb = x[chunk]
            yield (self.train_transform(xb) if self.train_transform is not None else xb), y[chunk]

    def training_samples(self, index: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self.splits()[0].tensors
        return x[index], y[index]
