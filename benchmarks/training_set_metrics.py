"""Loss and accuracy on the whole MNIST training set (60,000 images, un-augmented) of the pruned
MLPNet runs under one or more folders: a criterion for choosing a pruner's settings that never
reads the test set (CHITA++'s stage count was chosen with it).

    python -m benchmarks.training_set_metrics outputs/multirun/a outputs/multirun/b

Each run folder needs its results.json and pruned.pt; rows are sorted by sparsity, seed, method and
stage count. The data directory comes from CHITA_DATA_DIR (CHITA_CACHE_DIR for the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from chitalab.data import MNISTDataModule
from chitalab.models import MLPNet, loss_function
from chitalab.outputs import RESULTS_FILE, WEIGHTS_FILE

from .tables import format_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_set_metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run folders (searched recursively)")
    parser.add_argument("--threads", type=int, default=2)
    return parser


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = MNISTDataModule(
        os.environ.get("CHITA_DATA_DIR", "data"), os.environ.get("CHITA_CACHE_DIR", ".cache"), download=False
    )
    data.setup()
    x, y = data.training_samples(torch.arange(data.num_train))
    rows = []
    for folder in args.folders:
        for path in sorted(folder.rglob(RESULTS_FILE)):
            results = json.loads(path.read_text())
            if results["model"] != "mlpnet":
                continue
            net = MLPNet()
            net.load_state_dict(torch.load(path.parent / WEIGHTS_FILE, weights_only=True))
            net.eval()
            out = net(x)
            rows.append(
                dict(
                    method=results["method"],
                    stages=results["pruner"].get("num_stages", ""),
                    sparsity=results["sparsity"]["requested"],
                    seed=results["seed"],
                    train_loss=float(loss_function(net)(out, y)),
                    train_acc=float((out.argmax(dim=1) == y).double().mean() * 100),
                    test_acc=results["pruned"]["test_acc"],
                )
            )
    rows.sort(key=lambda r: (r["sparsity"], r["seed"], r["method"], str(r["stages"])))
    title = f"MLPNet runs on all {data.num_train:,} training images (un-augmented); test accuracy from results.json"
    print(format_table(title, rows, ["method", "stages", "sparsity", "seed", "train_loss", "train_acc", "test_acc"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
