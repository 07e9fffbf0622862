"""Fisher collection: both methods (hooks, vmap) against a naive loop, mini-batch means, column
ranges, activation memory, refusals (the memory planner is tested in test_memory.py)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chitalab.errors import UserError
from chitalab.fisher import activation_bytes, check_finite_gradients, collect_gradients
from chitalab.models import MLPNet, loss_function
from chitalab.params import PrunedParams, select_pruned


class TinyConvNet(nn.Module):
    """Conv + BatchNorm + linear with biases: exercises frozen parameters and buffers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, bias=True)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return MLPNet(64, [16, 8], 4).eval()
    model = TinyConvNet()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def naive_gradients(model, pruned, loss_fn, x, y, mini_bsz):
    """One backward pass per mini-batch."""
    rows = []
    for i in range(0, x.shape[0] // mini_bsz * mini_bsz, mini_bsz):
        model.zero_grad()
        loss_fn(model(x[i : i + mini_bsz]), y[i : i + mini_bsz]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in pruned.params]))
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("mini_bsz", [1, 3])
@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_both_methods_equal_the_naive_loop(kind, mini_bsz, method):
    model = make_model(kind)
    pruned = select_pruned(model)
    loss_fn = loss_function(model)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 4, (20,))
    G = collect_gradients(model, pruned, loss_fn, x, y, mini_bsz=mini_bsz, chunk_size=4, progress=False, method=method)
    expected = naive_gradients(model, pruned, loss_fn, x, y, mini_bsz)
    assert G.shape == (20 // mini_bsz, pruned.numel)
    torch.testing.assert_close(G, expected, rtol=1e-4, atol=1e-6)


class AwkwardNet(nn.Module):
    """What the hook rules must get right: strided, dilated, padded and grouped convolutions,
    an in-place ReLU right after a layer, a layer called twice, a linear layer on tokens."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, dilation=2, padding=2, groups=2)
        self.shared = nn.Conv2d(4, 4, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.tokens = nn.Linear(4, 6)
        self.head = nn.Linear(6 * 16, 3)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        h = self.shared(self.relu(self.shared(self.conv2(h))))
        t = self.relu(self.tokens(h.flatten(2).transpose(1, 2)))  # (batch, 16 tokens, 6)
        return self.head(t.flatten(1))


@pytest.mark.parametrize("mini_bsz", [1, 2])
def test_hook_rules_on_awkward_layers_equal_the_naive_loop(mini_bsz):
    torch.manual_seed(1)
    model = AwkwardNet().eval()
    pruned = select_pruned(model)
    x, y = torch.randn(12, 2, 8, 8), torch.randint(0, 3, (12,))
    G = collect_gradients(
        model, pruned, F.cross_entropy, x, y, mini_bsz=mini_bsz, chunk_size=4, progress=False, method="hooks"
    )
    torch.testing.assert_close(G, naive_gradients(model, pruned, F.cross_entropy, x, y, mini_bsz), rtol=1e-4, atol=1e-6)


class OverwritesItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = x * 1
        out = self.fc(h)
        h.mul_(2)  # changes what fc saw, after fc read it
        return out + h[:, :2]


def test_an_input_changed_in_place_after_the_layer_is_refused_by_the_hooks():
    model = OverwritesItsInput().eval()
    x, y = torch.randn(4, 4), torch.randint(0, 2, (4,))
    with pytest.raises(RuntimeError, match="changed in place.*method=vmap"):
        collect_gradients(model, select_pruned(model), F.cross_entropy, x, y, progress=False, method="hooks")


class TiedWeights(nn.Module):
    """A layer's weight used again outside its call: a forward hook sees only half of it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)

    def forward(self, x):
        return F.linear(self.fc(x), self.fc.weight)


def test_where_the_layer_rules_do_not_hold_the_first_row_check_falls_back_to_vmap(caplog):
    torch.manual_seed(0)
    model = TiedWeights().eval()
    pruned = select_pruned(model)
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    with caplog.at_level(logging.WARNING):
        G = collect_gradients(model, pruned, F.cross_entropy, x, y, progress=False)
    assert "disagree with autograd" in caplog.text
    torch.testing.assert_close(G, naive_gradients(model, pruned, F.cross_entropy, x, y, 1), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="disagree with autograd.*method=vmap"):
        collect_gradients(model, pruned, F.cross_entropy, x, y, progress=False, method="hooks")

    def summed(out, target):  # not a batch mean: the rows' scale would be wrong
        return F.nll_loss(out, target, reduction="sum")

    mlp = make_model("mlp")
    with pytest.raises(ValueError, match="disagree with autograd"):
        collect_gradients(
            mlp, select_pruned(mlp), summed, x.new_zeros(6, 64).normal_(), y, progress=False, method="hooks"
        )


def test_tensors_without_a_hook_rule_fall_back_to_vmap():
    model = make_model("conv")
    pruned = PrunedParams(["conv.bias", "fc.weight"], [model.conv.bias, model.fc.weight])
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    G = collect_gradients(model, pruned, F.cross_entropy, x, y, progress=False)
    torch.testing.assert_close(G, naive_gradients(model, pruned, F.cross_entropy, x, y, 1), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="no rule"):
        collect_gradients(model, pruned, F.cross_entropy, x, y, progress=False, method="hooks")


def test_mini_batch_rows_are_means_of_per_sample_rows():
    model = make_model("mlp")
    pruned = select_pruned(model)
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 4, (12,))
    per_sample = collect_gradients(model, pruned, F.nll_loss, x, y, mini_bsz=1, progress=False)
    batched = collect_gradients(model, pruned, F.nll_loss, x, y, mini_bsz=4, progress=False)
    torch.testing.assert_close(batched, per_sample.reshape(3, 4, -1).mean(dim=1), rtol=1e-4, atol=1e-6)


def test_collection_leaves_the_model_unchanged_and_only_pruned_weights_count():
    model = make_model("conv")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = select_pruned(model, exclude=["fc.*"])
    G = collect_gradients(
        model, pruned, F.cross_entropy, torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,)), progress=False
    )
    assert G.shape == (6, model.conv.weight.numel())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_needs_eval_mode():
    model = make_model("mlp").train()
    with pytest.raises(ValueError, match="eval mode"):
        collect_gradients(model, select_pruned(model), F.nll_loss, torch.randn(2, 64), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("columns", [(0, 27), (20, 31), (27, 120), (100, 203)])
def test_column_ranges_are_slices_of_the_full_matrix(columns):
    model = make_model("conv")
    pruned = select_pruned(model)  # conv 27 weights, then fc 432
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    full = collect_gradients(model, pruned, F.cross_entropy, x, y, chunk_size=4, progress=False)
    part = collect_gradients(model, pruned, F.cross_entropy, x, y, chunk_size=4, progress=False, columns=columns)
    torch.testing.assert_close(part, full[:, columns[0] : columns[1]])


def test_gradients_can_be_stored_in_half_precision():
    model = make_model("mlp")
    pruned = select_pruned(model)
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 4, (5,))
    full = collect_gradients(model, pruned, F.nll_loss, x, y, progress=False)
    half = collect_gradients(model, pruned, F.nll_loss, x, y, dtype=torch.bfloat16, progress=False)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=1e-2, atol=1e-3)


def test_activation_bytes_grow_with_the_batch_and_leave_parameters_out():
    model = make_model("conv")
    one = activation_bytes(model, F.cross_entropy, torch.randn(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    four = activation_bytes(model, F.cross_entropy, torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    input_and_two_feature_maps = 4 * (8 * 8 + 2 * 3 * 6 * 6)  # x, the conv output, the BN output
    assert input_and_two_feature_maps <= one < 2 * input_and_two_feature_maps
    assert 3.5 * one < four <= 4 * one
    assert all(p.grad is None for p in model.parameters())


def test_non_finite_gradients_are_refused():
    G = torch.ones(4, 3)
    G[1, 2] = float("nan")
    with pytest.raises(UserError, match="1 of 4 Fisher gradients"):
        check_finite_gradients(G)
