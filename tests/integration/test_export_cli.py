"""`python -m chitalab.export` on a tiny run: sparse, onnx and deploy outputs, one-line errors;
on the real models (slow): the size targets and ONNX accuracy on the full test set."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.support import CHECKPOINT_DIR, DATA_DIR, SYNTHETIC, needs_cifar10, needs_mnist, run_cli, run_module

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed: pip install -e '.[export]'"
)


def export(*args: str) -> subprocess.CompletedProcess:
    """`python -m chitalab.export ARGS`, run in this process."""
    env = dict(os.environ, CHITA_DATA_DIR=str(DATA_DIR), CHITA_CHECKPOINT_DIR=str(CHECKPOINT_DIR))
    return run_module("chitalab.export.__main__", *args, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    done = run_cli(*SYNTHETIC, "pruner=mp", "sparsity=0.9", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    return out


def test_sparse_export_round_trips(tiny_run):
    from chitalab.export.sparse_format import load_sparse

    done = export(str(tiny_run), "--format", "sparse")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    path = tiny_run / "pruned.sparse"
    assert summary["bit_exact"] and Path(summary["path"]) == path and summary["bytes"] == path.stat().st_size
    assert summary["ratio"] < 0.5
    dense = torch.load(tiny_run / "pruned.pt", weights_only=True)
    back = load_sparse(path)
    assert all(torch.equal(back[k], v) for k, v in dense.items())


@needs_ort
def test_onnx_export_is_checked_against_pytorch(tiny_run, tmp_path):
    out = tmp_path / "model.onnx"
    done = export(str(tiny_run), "--format", "onnx", "--out", str(out), "--check-batches", "all")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert out.is_file() and summary["samples"] == 256 and summary["max_abs_diff"] < 1e-4
    assert summary["torch_accuracy"] == summary["onnx_accuracy"]
    results = json.loads((tiny_run / "results.json").read_text())
    assert summary["torch_accuracy"] == pytest.approx(results["pruned"]["test_acc"], abs=1e-4)


def test_deploy_block_without_latency(tiny_run, tmp_path):
    out = tmp_path / "deploy.json"
    done = export(str(tiny_run), "--format", "deploy", "--latency", "no", "--out", str(out))
    assert done.returncode == 0, done.stderr
    block = json.loads(out.read_text())
    assert block["pruned_weights"] == 64 * 16 + 16 * 8 + 8 * 4 and block["latency"] is None
    assert block["macs"]["sparse"] == block["nonzero_pruned_weights"]  # an MLP: one use per weight


def test_user_errors_are_one_line_with_exit_code_2(tiny_run, tmp_path, capsys):
    from chitalab.export.__main__ import main

    cases = [
        ([str(tmp_path / "missing"), "--format", "sparse"], "run folder not found"),
        ([str(tiny_run)], "--format"),
        ([str(tiny_run), "--format", "onnx", "--check-batches", "many"], "--check-batches='many'"),
        ([str(tiny_run), "--format", "sparse", "--out", str(tmp_path / "no" / "x.sparse")], "does not exist"),
        ([str(tmp_path), "--format", "sparse"], "not a finished run folder"),
    ]
    for args, message in cases:  # in this process: the same code path, without the start-up time
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, args
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, lines)
    assert not list(tmp_path.glob("**/*.part"))
    done = export(str(tiny_run), "--format", "zip")  # and once through the real command
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --format='zip' is not allowed; choose one of: sparse, onnx, deploy"
    ]


def _assert_sizes_and_onnx(run: Path, max_ratio: float) -> dict:
    done = export(str(run), "--format", "sparse")
    assert done.returncode == 0, done.stderr
    sparse = json.loads(done.stdout)
    assert sparse["bit_exact"] and sparse["ratio"] <= max_ratio, sparse
    done = export(str(run), "--format", "onnx", "--check-batches", "all")
    assert done.returncode == 0, done.stderr
    onnx = json.loads(done.stdout)
    results = json.loads((run / "results.json").read_text())
    assert onnx["samples"] == 10_000 and onnx["max_abs_diff"] < 1e-4
    assert onnx["onnx_accuracy"] == onnx["torch_accuracy"] == pytest.approx(results["pruned"]["test_acc"], abs=1e-4)
    return {"sparse": sparse, "onnx": onnx}


@pytest.mark.slow
@needs_mnist
@needs_ort
def test_mlpnet_at_90_sparse_is_at_most_a_fifth_and_onnx_is_exact(tmp_path):
    run = tmp_path / "mlpnet"
    done = run_cli("sparsity=0.9", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr
    _assert_sizes_and_onnx(run, 0.20)


@pytest.mark.slow
@needs_cifar10
@needs_ort
def test_resnet20_at_90_sparse_is_at_most_a_quarter_and_onnx_is_exact(tmp_path):
    run = tmp_path / "resnet20"
    done = run_cli(
        "model=resnet20",
        "dataset=cifar10",
        "pruner=mp",
        "model.bn_recalibration=false",
        "sparsity=0.9",
        f"hydra.run.dir={run}",
    )
    assert done.returncode == 0, done.stderr
    _assert_sizes_and_onnx(run, 0.25)
