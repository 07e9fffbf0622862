"""ONNX export of a tiny net against PyTorch; the deploy block; the W&B model artifact."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from torch import nn

from chitalab.export.payoff import deploy_summary, finite, log_model_artifact
from chitalab.export.sparse_format import SPARSE_FILE, load_sparse
from chitalab.models import MLPNet

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_ort = pytest.mark.skipif(
    not HAVE_ORT, reason="onnx/onnxruntime not installed: pip install -e '.[export]' (also part of .[dev])"
)


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def pruned_tiny() -> TinyConvNet:
    torch.manual_seed(0)
    net = TinyConvNet()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2)
        net.fc.weight[torch.rand_like(net.fc.weight) < 0.9] = 0
    return net.eval()


@needs_ort
def test_onnx_export_matches_pytorch_on_any_batch_size(tmp_path):
    from chitalab.export.onnx_export import check_onnx, export_onnx

    net = pruned_tiny()
    path = export_onnx(net, torch.randn(2, 1, 8, 8), tmp_path / "tiny.onnx")
    assert path.is_file() and not (tmp_path / "tiny.onnx.part").exists()
    batches = [(torch.randn(n, 1, 8, 8), torch.randint(0, 4, (n,))) for n in (1, 7, 32)]
    check = check_onnx(path, net, batches)
    assert check.samples == 40 and check.max_abs_diff < 1e-4
    assert check.same_predictions == 40 and check.torch_accuracy == check.onnx_accuracy


@needs_ort
def test_onnx_export_of_mlpnet_log_probabilities(tmp_path):
    from chitalab.export.onnx_export import check_onnx, export_onnx

    net = MLPNet(64, (16, 8), 4).eval()
    path = export_onnx(net, torch.randn(1, 1, 8, 8), tmp_path / "mlp.onnx")
    check = check_onnx(path, net, [(torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,)))])
    assert check.max_abs_diff < 1e-4


def test_deploy_summary_is_json_friendly_and_counts_right():
    net = pruned_tiny().train()
    block = deploy_summary(net, ["conv.weight", "fc.weight"], torch.randn(1, 1, 8, 8))
    assert net.training  # the caller's mode is kept
    text = json.dumps(block, allow_nan=False)  # finite numbers only
    assert json.loads(text) == block
    nonzero_fc = int((net.fc.weight != 0).sum())
    assert block["pruned_weights"] == 36 + 1024
    assert block["nonzero_pruned_weights"] == 36 + nonzero_fc
    assert block["macs"]["dense"] == 36 * 64 + 1024 and block["macs"]["sparse"] == 36 * 64 + nonzero_fc
    sizes = block["checkpoint_bytes"]
    assert sizes["sparse"] < sizes["dense"] and sizes["ratio"] == pytest.approx(sizes["sparse"] / sizes["dense"])
    assert block["latency"] is None


def test_deploy_summary_with_latency_is_cheap():
    """Cheap in work, not in seconds (a loaded machine is slower): at most the 20 rounds each timing
    is capped at, whatever the budget in seconds left over."""
    net = MLPNet(64, (16, 8), 4).eval()
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    block = deploy_summary(net, names, torch.randn(1, 1, 8, 8), latency=True, latency_budget_s=0.3)
    batches = block["latency"]["batches"]
    rounds = [v["rounds"] for v in batches.values()] + [
        layer["rounds"] for v in batches.values() for layer in v["layers"]
    ]
    assert len(rounds) == 2 * (1 + len(names)) and all(3 <= r <= 20 for r in rounds), rounds
    assert set(batches) == {"1", "64"} and block["latency"]["threads"] == 1
    assert all(v["dense_ms"] > 0 and v["fastest_ms"] > 0 for v in batches.values())
    json.dumps(block, allow_nan=False)


def test_finite_replaces_nan_and_inf():
    assert finite({"a": [1.0, math.nan], "b": math.inf, "c": 3}) == {"a": [1.0, None], "b": None, "c": 3}


def _run_folder(tmp_path, sparsity: float):
    net = MLPNet(64, (32, 16), 4)
    with torch.no_grad():
        for p in net.parameters():
            p[torch.rand_like(p) < sparsity] = 0
    torch.save(net.state_dict(), tmp_path / "pruned.pt")
    return net


def test_wandb_artifact_is_the_sparse_checkpoint_when_smaller(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    net = _run_folder(tmp_path, 0.9)
    logger = WandbLogger(project="chitalab-test", save_dir=str(tmp_path), offline=True)
    try:
        logged = log_model_artifact(logger, tmp_path)
    finally:
        logger.experiment.finish()
    assert logged.format == "sparse" and logged.path == tmp_path / SPARSE_FILE
    assert logged.bytes < logged.dense_bytes
    assert logged.artifact.type == "model" and logged.artifact.metadata["format"] == "sparse"
    assert SPARSE_FILE in logged.artifact.manifest.entries
    back = load_sparse(tmp_path / SPARSE_FILE)
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())


def test_wandb_artifact_falls_back_to_the_dense_file(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _run_folder(tmp_path, 0.0)
    # Without zeros the sparse file is still a little smaller than torch.save's zip (its
    # header is shorter); a sparse file that is not smaller is stood in for by padding one.
    dense_size = (tmp_path / "pruned.pt").stat().st_size
    (tmp_path / SPARSE_FILE).write_bytes(b"\x00" * (dense_size + 1))
    run = wandb.init(mode="offline", dir=str(tmp_path), project="chitalab-test")
    try:
        logged = log_model_artifact(run, tmp_path)
    finally:
        run.finish()
    assert logged.format == "dense" and logged.path.name == "pruned.pt"
    assert "pruned.pt" in logged.artifact.manifest.entries
