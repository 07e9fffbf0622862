"""Small messages that must say the right thing: a sparsity that keeps nothing warns, a run
without overrides still has a W&B name, a top-level typo gets the closest top-level key, and a
missing ImageNet root is found before torch is imported."""

from __future__ import annotations

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

from chitalab import cli
from chitalab.models import MLPNet
from chitalab.params import select_pruned
from chitalab.run.job import warn_empty
from chitalab.solver import GLOBAL_TOP_K, PerLayer
from tests.support import CONF, REPO, run_cli


def test_a_sparsity_that_keeps_no_weight_warns(caplog):
    pruned = select_pruned(MLPNet(64, [16, 8], 4))
    with caplog.at_level(logging.WARNING):
        warn_empty(GLOBAL_TOP_K, pruned, 0.99999)
        warn_empty(GLOBAL_TOP_K, pruned, 0.9)  # keeps 118: nothing to say
    assert [r.getMessage() for r in caplog.records] == [
        "sparsity=0.99999 keeps no weight of the 1184 pruned: the pruned layers will be all zeros "
        "(a sparsity below 0.999155 keeps at least one)"
    ]


def test_a_uniform_pattern_that_empties_a_layer_warns(caplog):
    pruned = select_pruned(MLPNet(64, [16, 8], 4))
    uniform = PerLayer(shapes=pruned.shapes, mode="uniform")
    with caplog.at_level(logging.WARNING):
        warn_empty(uniform, pruned, 0.999)
        warn_empty(uniform, pruned, 0.9)
        warn_empty(PerLayer(shapes=pruned.shapes, mode="caps", max_layer_sparsity=0.9999), pruned, 0.999)
    assert [r.getMessage() for r in caplog.records] == [
        "sparsity=0.999 keeps no weight of 2 layer(s) under pattern.mode=uniform (fc2.weight, fc3.weight): "
        "they will be all zeros"
    ]


def test_a_run_without_overrides_is_named_by_its_folder(monkeypatch):
    def job(overrides: str):
        return SimpleNamespace(
            job=SimpleNamespace(override_dirname=overrides),
            runtime=SimpleNamespace(output_dir="/x/outputs/2026-12-07/23-59-32-123456-a1b2c3"),
        )

    monkeypatch.setattr(cli, "hydra_job", lambda: job(""))
    assert cli.run_name() == "23-59-32-123456-a1b2c3"
    monkeypatch.setattr(cli, "hydra_job", lambda: job("pruner=mp,sparsity=0.5"))
    assert cli.run_name() == "pruner=mp,sparsity=0.5"


@pytest.mark.parametrize(
    "typo,expected",
    [
        ("sparsty=0.5", "sparsty is not a config key; did you mean sparsity?"),
        ("sede=1", "sede is not a config key; did you mean seed?"),
        ("progres=false", "progres is not a config key; did you mean progress?"),
    ],
)
def test_a_top_level_typo_gets_the_closest_top_level_key(typo, expected):
    assert cli.check_composition(["model=tiny_mlp", typo], CONF) == expected


def test_the_missing_imagenet_root_is_one_line_before_torch_is_imported(tmp_path):
    done = run_cli("pruner=chita", "sparsity=0.9", "model=resnet50", f"paths.data_dir={tmp_path}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'imagenet' / 'train'} does not exist; point dataset.datamodule.root (default: "
        "$CHITA_DATA_DIR/imagenet) at a folder with train/ and val/ holding one folder per class, "
        "or use dataset=synthetic_imagenet for a run on random 224x224 images"
    ]
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from chitalab.preflight import check_files\n"
        f"with initialize_config_dir(config_dir={str(CONF)!r}, version_base='1.3'):\n"
        f"    cfg = compose('config', overrides=['model=resnet50', 'paths.data_dir={tmp_path}'])\n"
        "try:\n"
        "    check_files(cfg)\n"
        "except Exception as err:\n"
        "    print(type(err).__name__, 'torch' in sys.modules)\n"
    )
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert checked.stdout.split() == ["UserError", "False"], checked.stderr
