"""Pruned-parameter selection, flattening, sparsity, and checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chitalab.errors import UserError
from chitalab.models import MLPNet, load_checkpoint
from chitalab.models.checkpoint import extract_state_dict
from chitalab.params import keep_count, select_pruned
from tests.support import MLPNET_CHECKPOINT


def test_selects_conv_and_linear_weights_never_biases_or_norms():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    pruned = select_pruned(model)
    assert pruned.names == ["0.weight", "3.weight"]
    assert select_pruned(model, exclude=["3.*"]).names == ["0.weight"]
    with pytest.raises(UserError, match="no conv/linear weight matches"):
        select_pruned(model, include=["nothing*"])


def test_flatten_assign_round_trip_and_sparsity():
    model = MLPNet(6, [4], 2)
    pruned = select_pruned(model)
    flat = torch.arange(pruned.numel, dtype=torch.float32)
    pruned.assign(flat)
    torch.testing.assert_close(pruned.flatten(), flat)
    assert pruned.count_zeros() == 1
    assert pruned.sparsity() == pytest.approx(1 / pruned.numel)


def test_keep_count_matches_the_paper_formula():
    assert keep_count(0.9, 32360) == int((1 - 0.9) * 32360)
    assert keep_count(0.0, 10) == 10


def test_chita_checkpoint_layout_is_mapped_and_masks_applied():
    state = {
        "module.fc1._layer.weight": torch.ones(2, 3),
        "module.fc1._weight_mask": torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
    }
    out = extract_state_dict({"model_state_dict": state, "optimizer": object()})
    assert list(out) == ["fc1.weight"]
    torch.testing.assert_close(out["fc1.weight"], state["module.fc1._weight_mask"])


def test_mismatched_checkpoint_is_refused_with_the_keys(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"fc1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(MLPNet(6, [4], 2), path)
    assert "missing ['fc2.weight']" in str(err.value) and "shape mismatch" in str(err.value)


def test_missing_checkpoint_without_url_is_refused(tmp_path):
    with pytest.raises(UserError, match="checkpoint file not found"):
        load_checkpoint(MLPNet(6, [4], 2), tmp_path / "nope.ckpt")


@pytest.mark.skipif(not MLPNET_CHECKPOINT.is_file(), reason=f"paper checkpoint absent: {MLPNET_CHECKPOINT}")
def test_paper_mlpnet_checkpoint_loads_strictly():
    model = MLPNet()
    load_checkpoint(model, MLPNET_CHECKPOINT)
    assert select_pruned(model).numel == 32360
