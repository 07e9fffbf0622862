"""The paper's MLPNet on the real MNIST: dense accuracy and the one-shot targets.

Skipped, with the reason, when the data or the checkpoint is absent (see conftest.py).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from chitalab.data import MNISTDataModule
from chitalab.outputs import RESULTS_FILE, WEIGHTS_FILE
from tests.support import DATA_DIR, needs_mnist, run_cli
from tests.support.patterns import is_n_m


@needs_mnist
def test_compressed_only_copy_is_unpacked_into_the_cache(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (DATA_DIR / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, raw)
    dm = MNISTDataModule(str(tmp_path / "data"), str(tmp_path / "cache"))
    dm.setup()
    assert len(dm.train_set) == 60000 and len(dm.test_set) == 10000
    assert sorted(p.name for p in (tmp_path / "cache" / "MNIST" / "raw").iterdir()) == sorted(
        p.name.removesuffix(".gz") for p in raw.iterdir()
    )
    x = dm.train_set.tensors[0]
    assert x.shape[1:] == (1, 28, 28)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-3) and float(x.std()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
@needs_mnist
def test_paper_targets_for_one_shot_mlpnet(tmp_path):
    """Dense 93.97; MP 90.3 ± 0.5 at 0.9; CHITA (defaults: swap search, λ chosen on held-out training
    samples; n = 1000, mini-batch 1) ≥ 92.5 at 0.9 and ≥ 89.0 at 0.95 (the paper: 92.46 and 88.09;
    what the defaults reach here: docs/results.md). Slow: four MNIST jobs."""
    done = run_cli("-m", "pruner=mp,chita", "sparsity=0.9,0.95", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    runs = {
        (r["pruner"]["name"], r["sparsity"]["requested"]): r
        for r in (json.loads(p.read_text()) for p in tmp_path.glob(f"*/{RESULTS_FILE}"))
    }
    assert len(runs) == 4
    for r in runs.values():
        assert r["dense"]["test_acc"] == pytest.approx(93.97, abs=0.005)
        assert r["sparsity"]["measured"] >= r["sparsity"]["requested"]
    assert runs["mp", 0.9]["pruned"]["test_acc"] == pytest.approx(90.3, abs=0.5)
    assert runs["chita", 0.9]["pruner"]["gradients"]["n_samples"] == 1000
    assert runs["chita", 0.9]["pruner"]["gradients"]["mini_bsz"] == 1
    assert runs["chita", 0.9]["pruned"]["test_acc"] >= 92.5
    assert runs["chita", 0.95]["pruned"]["test_acc"] >= 89.0
    assert runs["chita", 0.95]["solver"]["l2_chosen"] in runs["chita", 0.95]["pruner"]["l2"]


def _results(folder) -> dict:
    return {
        (r["pruner"]["name"], r["schedule"], r["sparsity"]["requested"]): r
        for r in (json.loads(p.read_text()) for p in folder.rglob(RESULTS_FILE))
    }


@pytest.mark.slow
@needs_mnist
def test_chitapp_and_gradual_targets(tmp_path):
    """CHITA++ (defaults) ≥ 94.0 at 0.9 and ≥ 90.73 (the paper's figure) at 0.98; gradual_fast
    at 0.98 at least 2 points above CHITA++ there (the figures: docs/results.md, "CHITA++ and
    gradual pruning")."""
    done = run_cli("-m", "pruner=chitapp", "sparsity=0.9,0.98", f"hydra.sweep.dir={tmp_path / 'chitapp'}")
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli("schedule=gradual_fast", "sparsity=0.98", f"hydra.run.dir={tmp_path / 'gradual'}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = _results(tmp_path)
    chitapp_98 = runs["chitapp", "oneshot", 0.98]["pruned"]["test_acc"]
    assert runs["chitapp", "oneshot", 0.9]["pruned"]["test_acc"] >= 94.0
    assert chitapp_98 >= 90.73
    gradual = runs["chita", "gradual", 0.98]
    assert gradual["sparsity"]["measured"] >= 0.98
    assert gradual["pruned"]["test_acc"] >= chitapp_98 + 2


@pytest.mark.slow
@needs_mnist
def test_two_four_on_mlpnet_orders_chita_woodfisher_mp_and_keeps_the_pattern_on_disk(tmp_path):
    """At 2:4 (seed 0): CHITA ≥ WoodFisher ≥ MP, every saved weight 2:4 (the figures:
    docs/patterns.md)."""
    done = run_cli("-m", "pattern=nm", "pruner=mp,woodfisher,chita", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r["pruner"]["name"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob(f"*/{RESULTS_FILE}"))}
    accuracy = {name: r["pruned"]["test_acc"] for name, r in runs.items()}
    assert accuracy["chita"] >= accuracy["woodfisher"] >= accuracy["mp"], accuracy
    for folder in tmp_path.glob("*/"):
        if (folder / WEIGHTS_FILE).is_file():
            state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
            assert all(is_n_m(state[f"fc{i}.weight"], 2, 4) for i in (1, 2, 3)), folder
    assert all(r["pattern_check"]["holds"] and r["sparsity"]["requested"] == 0.5 for r in runs.values())
