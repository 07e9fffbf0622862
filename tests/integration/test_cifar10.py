"""The paper's ResNet20 on CIFAR-10 (the shared, JPEG-lossy cifar10.npz): dense accuracy with
both normalisations, and the one-shot figures of the paper's own code on this data.

Skipped, with the reason, when the data or the checkpoint is absent (see conftest.py).
"""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from chitalab.models import load_model
from chitalab.outputs import RESULTS_FILE
from chitalab.run.config import read_model
from tests.support import CHECKPOINT_DIR, CONF, DATA_DIR, needs_cifar10, run_cli

RESNET20 = ("model=resnet20", "dataset=cifar10")
# The paper's code on this data (PAPER_TARGETS.md): dense 82.89 after BatchNorm re-estimation;
# block backsolve (block 500, l2 1e-3, n = 1000) and MP at sparsity 0.6 / 0.7 / 0.8.
PAPER_CODE_BLOCK = {0.6: 80.18, 0.7: 74.33, 0.8: 58.27}
PAPER_CODE_MP = {0.6: 72.77, 0.7: 64.42, 0.8: 41.13}


@needs_cifar10
def test_checkpoint_normalisation_without_recalibration_gives_the_readmes_accuracy():
    """81.32 on the JPEG test set with (0.5, 0.5, 0.5), as the checkpoint README measured."""
    overrides = [
        *RESNET20,
        "dataset.normalization=checkpoint",
        f"paths.data_dir={DATA_DIR}",
        f"paths.checkpoint_dir={CHECKPOINT_DIR}",
        "paths.output_dir=/tmp/x",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    datamodule = instantiate(cfg.dataset.datamodule)
    model = load_model(read_model(cfg.model)).eval()
    correct = 0
    with torch.no_grad():
        for x, y in datamodule.test_dataloader():
            correct += int((model(x).argmax(dim=1) == y).sum())
    assert correct == 8132


@pytest.mark.slow
@needs_cifar10
@pytest.mark.parametrize("sparsity", sorted(PAPER_CODE_MP))
def test_paper_normalisation_with_batchnorm_reestimation_matches_the_papers_code(tmp_path, sparsity):
    """Dense 82.89 ± 0.3 (the paper's code here); MP within a point of the paper's code."""
    done = run_cli(*RESNET20, "pruner=mp", f"sparsity={sparsity}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert run["dense"]["test_acc"] == pytest.approx(82.89, abs=0.3)
    assert run["pruned"]["test_acc"] == pytest.approx(PAPER_CODE_MP[sparsity], abs=1.0)


@pytest.mark.slow
@needs_cifar10
@pytest.mark.parametrize("sparsity", sorted(PAPER_CODE_BLOCK))
def test_one_shot_block_chita_is_at_least_as_accurate_as_the_papers_code(tmp_path, sparsity):
    """Block backsolve, n = 1000, l2 1e-3: within a point of the paper's code or better (no time
    is asserted: a run's seconds depend on what else shares the cores)."""
    done = run_cli(
        *RESNET20, "pruner=chita_block", "pruner.l2=1e-3", f"sparsity={sparsity}", f"hydra.run.dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert run["pruner"]["n_samples"] == 1000 and run["pruner"]["block_size"] == 500
    assert run["pruned"]["test_acc"] >= PAPER_CODE_BLOCK[sparsity] - 1.0, run["pruned"]
