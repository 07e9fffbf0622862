"""Loss and accuracy on the whole training set (un-augmented) of pruned MLPNet/MNIST and
ResNet20/CIFAR-10 runs under one or more folders: a criterion for choosing a pruner's settings
that never reads the test set (CHITA++'s stage count on MLPNet and its stage solver on ResNet20
were chosen with it).

    python -m benchmarks.training_set_metrics outputs/multirun/a outputs/multirun/b

Each run folder needs its results.json and pruned.pt (a ResNet20 run's BatchNorm statistics are
those pruned.pt holds); rows are sorted by model, sparsity, seed, method and stage count. CIFAR-10
is normalised as the run's `.hydra/config.yaml` says (the default, "paper", without one). The
data directory comes from CHITA_DATA_DIR (CHITA_CACHE_DIR for the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from chitalab.data import CIFAR10DataModule, MNISTDataModule
from chitalab.data.base import PruningDataModule
from chitalab.models import MLPNet, resnet20
from chitalab.outputs import RESULTS_FILE, WEIGHTS_FILE
from chitalab.training.inference import evaluate_model

from .tables import format_table

MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "mlpnet": (MLPNet, "mnist"),
    "resnet20": (resnet20, "cifar10"),
}
"""The models this measures: how to build the network, and the data set it was trained on."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_set_metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run folders (searched recursively)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=250)
    return parser


def normalization(run_dir: Path) -> str:
    """The CIFAR-10 normalisation the run used (its saved Hydra config, else the default)."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.exists():
        return str(OmegaConf.select(OmegaConf.load(saved), "dataset.normalization", default="paper"))
    return "paper"


def training_data(dataset: str, norm: str) -> PruningDataModule:
    data_dir, cache_dir = os.environ.get("CHITA_DATA_DIR", "data"), os.environ.get("CHITA_CACHE_DIR", ".cache")
    data: PruningDataModule
    if dataset == "mnist":
        data = MNISTDataModule(data_dir, cache_dir, download=False)
    else:
        data = CIFAR10DataModule(data_dir, cache_dir, download=False, normalization=norm, augment=False)
    data.setup()
    return data


def training_batches(data: PruningDataModule, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Every training sample, in order and un-augmented, in batches of `batch_size`."""
    for start in range(0, data.num_train, batch_size):
        yield data.training_samples(torch.arange(start, min(start + batch_size, data.num_train)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    datasets: dict[tuple[str, str], PruningDataModule] = {}
    rows = []
    for folder in args.folders:
        for path in sorted(folder.rglob(RESULTS_FILE)):
            results = json.loads(path.read_text())
            if results["model"] not in MODELS:
                continue
            build, dataset = MODELS[results["model"]]
            key = (dataset, normalization(path.parent) if dataset == "cifar10" else "")
            if key not in datasets:
                datasets[key] = training_data(*key)
            net = build()
            net.load_state_dict(torch.load(path.parent / WEIGHTS_FILE, weights_only=True))
            train = evaluate_model(net, training_batches(datasets[key], args.batch_size))
            pruner = results["pruner"]
            rows.append(
                dict(
                    model=results["model"],
                    method=results["method"],
                    stages=pruner.get("num_stages", ""),
                    sparsity=results["sparsity"]["requested"],
                    seed=results["seed"],
                    train_loss=train["test_loss"],
                    train_acc=train["test_acc"],
                    test_acc=results["pruned"]["test_acc"],
                )
            )
    rows.sort(key=lambda r: (r["model"], r["sparsity"], r["seed"], r["method"], str(r["stages"])))
    title = "Pruned runs on all training images (un-augmented, eval mode); test accuracy from results.json"
    columns = ["model", "method", "stages", "sparsity", "seed", "train_loss", "train_acc", "test_acc"]
    print(format_table(title, rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
