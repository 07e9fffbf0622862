"""Data modules: the .npz array source, source selection, normalisation, augmentation,
ImageFolder and ImageNet-shaped synthetic data."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chitalab.data import CIFAR10DataModule, ImageFolderDataModule, MNISTDataModule, SyntheticDataModule, read_npz
from chitalab.data.augment import RandomCropFlip
from chitalab.data.cifar10 import NORMALIZATIONS
from chitalab.errors import UserError
from chitalab.models import MobileNetV1, create_timm_model
from tests.support import CIFAR10_NPZ


def write_npz(path, shape=(32, 32, 3), n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


def test_npz_arrays_become_nchw_floats_in_unit_range(tmp_path):
    arrays = write_npz(tmp_path / "d.npz")
    x_train, y_train, x_test, y_test = read_npz(tmp_path / "d.npz")
    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (10, 3, 32, 32)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    torch.testing.assert_close(x_train[3, 1], torch.from_numpy(arrays["x_train"][3, :, :, 1]).float() / 255)
    assert y_test.tolist() == arrays["y_test"].tolist()
    write_npz(tmp_path / "grey.npz", shape=(28, 28))
    assert read_npz(tmp_path / "grey.npz")[0].shape == (20, 1, 28, 28)


def test_npz_with_missing_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(UserError, match="lacks the arrays y_train, x_test, y_test"):
        read_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_cifar10_reads_the_npz_by_default_and_normalises_per_channel(tmp_path, caplog, normalization):
    arrays = write_npz(tmp_path / "cifar10.npz")
    dm = CIFAR10DataModule(str(tmp_path), str(tmp_path / "cache"), normalization=normalization)
    with caplog.at_level(logging.INFO):
        dm.setup()
    assert "reading the array file" in caplog.text and "cifar10.npz" in caplog.text
    mean, std = NORMALIZATIONS[normalization]
    x = dm.train_set.tensors[0]
    pixels = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).float() / 255
    expected = (pixels - torch.tensor(mean).reshape(3, 1, 1)) / torch.tensor(std).reshape(3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert dm.num_train == 20 and len(dm.test_set) == 10


def test_a_data_set_is_read_once_per_process_until_its_file_or_normalisation_changes(tmp_path, caplog):
    write_npz(tmp_path / "cifar10.npz")
    first = CIFAR10DataModule(str(tmp_path), str(tmp_path))
    first.setup()
    with caplog.at_level(logging.INFO):
        again = CIFAR10DataModule(str(tmp_path), str(tmp_path))
        again.setup()
    assert "in memory already" in caplog.text
    assert again.splits()[0].tensors[0] is first.splits()[0].tensors[0]
    other = CIFAR10DataModule(str(tmp_path), str(tmp_path), normalization="checkpoint")
    other.setup()
    assert not torch.equal(other.splits()[0].tensors[0], first.splits()[0].tensors[0])
    write_npz(tmp_path / "cifar10.npz", seed=1)
    os.utime(tmp_path / "cifar10.npz", ns=(1, 1))
    rewritten = CIFAR10DataModule(str(tmp_path), str(tmp_path), normalization="checkpoint")
    rewritten.setup()
    assert not torch.equal(rewritten.splits()[0].tensors[0], other.splits()[0].tensors[0])


def test_mnist_reads_an_array_file_when_asked(tmp_path):
    write_npz(tmp_path / "mine.npz", shape=(28, 28))
    dm = MNISTDataModule(str(tmp_path), str(tmp_path / "cache"), source="npz", npz_file="mine.npz")
    dm.setup()
    x = dm.train_set.tensors[0]
    assert x.shape == (20, 1, 28, 28)
    assert float(x.min()) >= -0.1307 / 0.3081 - 1e-6


def test_source_errors_name_the_value_and_the_choices(tmp_path):
    with pytest.raises(UserError, match="^source='hdf5' is not allowed; choose one of: auto, torchvision, npz"):
        CIFAR10DataModule(str(tmp_path), str(tmp_path), source="hdf5")
    with pytest.raises(UserError, match="^normalization='imagenet' is not allowed; choose one of: paper, checkpoint"):
        CIFAR10DataModule(str(tmp_path), str(tmp_path), normalization="imagenet")
    with pytest.raises(
        UserError,
        match="^dataset.datamodule.source=npz but .*cifar10.npz does not exist; set dataset.datamodule.npz_file",
    ):
        CIFAR10DataModule(str(tmp_path), str(tmp_path), source="npz").setup()
    with pytest.raises(UserError, match="dataset.datamodule.download is false"):
        CIFAR10DataModule(str(tmp_path), str(tmp_path), download=False).setup()


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_bad_source_read_through_the_config_names_hydras_full_key(tmp_path, dataset):
    """The class names its argument; the CLI adds the key Hydra was instantiating."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from chitalab.cli import find_user_error
    from tests.support import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"dataset={dataset}", "dataset.datamodule.source=hdf5"])
    with pytest.raises(Exception) as info:
        instantiate(cfg.dataset.datamodule)
    assert str(find_user_error(info.value)) == (
        "dataset.datamodule.source='hdf5' is not allowed; choose one of: auto, torchvision, npz"
    )


def test_crop_and_flip_moves_whole_windows_and_pads_with_the_fill_value():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 6, 6)
    fill = [-1.0, -2.0, -3.0]
    out = RandomCropFlip(padding=2, fill=fill)(x)
    padded = torch.tensor(fill).reshape(1, 3, 1, 1).repeat(16, 1, 10, 10)
    padded[:, :, 2:8, 2:8] = x
    flips = 0
    for i in range(16):
        windows = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 0 < flips < 16


def test_cifar10_training_batches_are_augmented_and_evaluation_batches_are_not(tmp_path):
    write_npz(tmp_path / "cifar10.npz")
    dm = CIFAR10DataModule(str(tmp_path), str(tmp_path), batch_size=20)
    torch.manual_seed(0)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (20, 3, 32, 32)
    assert not any(torch.equal(x[0], image) for image in dm.train_set.tensors[0])
    black = torch.tensor([-m / s for m, s in zip(*NORMALIZATIONS["paper"])])
    assert torch.isclose(x[:, :, 0, :], black.reshape(1, 3, 1)).any()  # some padding shows
    x_test, _ = next(iter(dm.test_dataloader()))
    torch.testing.assert_close(x_test, dm.test_set.tensors[0][:10])
    plain = CIFAR10DataModule(str(tmp_path), str(tmp_path), augment=False, batch_size=20)
    torch.manual_seed(0)
    x_plain, _ = next(iter(plain.train_dataloader()))
    assert any(torch.equal(x_plain[0], image) for image in plain.train_set.tensors[0])


def test_test_batches_have_their_own_size_and_training_batches_keep_theirs(tmp_path):
    write_npz(tmp_path / "cifar10.npz")
    dm = CIFAR10DataModule(str(tmp_path), str(tmp_path), batch_size=20, eval_batch_size=4)
    assert [len(y) for _, y in dm.test_dataloader()] == [4, 4, 2]
    assert [len(y) for _, y in dm.train_dataloader()] == [20]
    assert [len(y) for _, y in dm.training_batches(torch.arange(20))] == [20]
    assert CIFAR10DataModule(str(tmp_path), str(tmp_path), batch_size=5).eval_batch_size == 5  # default: the same
    with pytest.raises(UserError, match="eval_batch_size"):
        MNISTDataModule(str(tmp_path), str(tmp_path), eval_batch_size=0)


def write_image_folder(root: Path, height: int = 20, width: int = 24) -> None:
    """root/{train,val}/{cat,dog}/*.png: 3 and 2 random images per class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_data_module(tmp_path):
    write_image_folder(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), num_classes=2, image_size=16, resize=18, batch_size=4, num_workers=0)
    assert dm.num_train == 6
    x, y = dm.draw_training_samples(4, seed=0)
    assert x.shape == (4, 3, 16, 16) and set(y.tolist()) <= {0, 1}
    again, _ = dm.draw_training_samples(4, seed=0)
    torch.testing.assert_close(x, again)  # no random augmentation in Fisher samples
    x_val, y_val = next(iter(dm.test_dataloader()))
    assert x_val.shape == (4, 3, 16, 16) and y_val.tolist() == [0, 0, 1, 1]
    assert next(iter(dm.train_dataloader()))[0].shape == (4, 3, 16, 16)
    with pytest.raises(UserError, match="has 2 class folders but dataset.num_classes=1000"):
        ImageFolderDataModule(str(tmp_path), num_classes=1000).setup()
    with pytest.raises(UserError, match=r"dataset.datamodule.root .* train/ and val/ .* dataset=synthetic_imagenet"):
        ImageFolderDataModule(str(tmp_path / "nowhere"), num_classes=2)


TIMM_MODELS = ("resnet50.tv_in1k", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0", "inception_v3")


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_a_timm_model_is_evaluated_with_timms_own_data_config(tmp_path, name):
    from timm.data import create_transform, resolve_model_data_config

    write_image_folder(tmp_path, height=320, width=360)
    net = create_timm_model(name, num_classes=2)
    dm = ImageFolderDataModule(str(tmp_path), num_classes=2, preprocessing="model", batch_size=4, num_workers=0)
    dm.adapt_to(net)
    expected = create_transform(**resolve_model_data_config(net))
    assert repr(dm.eval_transform) == repr(expected)
    x_val, _ = next(iter(dm.test_dataloader()))
    first = Image.open(tmp_path / "val" / "cat" / "0.png").convert("RGB")
    torch.testing.assert_close(x_val[0], expected(first))
    x_fisher, _ = dm.training_samples(torch.arange(1))  # the Fisher samples are seen as at evaluation
    torch.testing.assert_close(x_fisher[0], expected(Image.open(tmp_path / "train" / "cat" / "0.png").convert("RGB")))


def test_a_model_without_a_timm_config_keeps_the_fixed_transforms(tmp_path):
    write_image_folder(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), num_classes=2, preprocessing="model")
    fixed = repr(dm.eval_transform)
    dm.adapt_to(MobileNetV1(num_classes=2))
    assert repr(dm.eval_transform) == fixed and "Resize(size=256" in fixed


def test_imagenet_shaped_synthetic_data_is_cheap_to_label():
    dm = SyntheticDataModule(num_train=6, num_test=2, input_shape=(3, 224, 224), num_classes=1000, label_resolution=4)
    dm.setup()
    x, y = dm.train_set.tensors
    assert x.shape == (6, 3, 224, 224) and int(y.max()) < 1000


@pytest.mark.skipif(not CIFAR10_NPZ.is_file(), reason=f"CIFAR-10 array file absent: {CIFAR10_NPZ}")
def test_the_shared_cifar10_npz_has_the_standard_splits():
    x_train, y_train, x_test, y_test = read_npz(CIFAR10_NPZ)
    assert x_train.shape == (50000, 3, 32, 32) and x_test.shape == (10000, 3, 32, 32)
    assert torch.bincount(y_train).tolist() == [5000] * 10 and torch.bincount(y_test).tolist() == [1000] * 10
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) <= 1.0
