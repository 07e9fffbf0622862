"""Fisher collection: vectorised gradients against a naive loop, mini-batch means, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chitalab.errors import UserError
from chitalab.fisher import check_finite_gradients, check_fisher_memory, collect_gradients
from chitalab.models import MLPNet, loss_function
from chitalab.params import select_pruned


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
def test_vectorised_equals_naive_loop(kind, mini_bsz):
    model = make_model(kind)
    pruned = select_pruned(model)
    loss_fn = loss_function(model)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 4, (20,))
    G = collect_gradients(model, pruned, loss_fn, x, y, mini_bsz=mini_bsz, chunk_size=4, progress=False)
    expected = naive_gradients(model, pruned, loss_fn, x, y, mini_bsz)
    assert G.shape == (20 // mini_bsz, pruned.numel)
    torch.testing.assert_close(G, expected, rtol=1e-4, atol=1e-6)


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
    G = collect_gradients(model, pruned, F.cross_entropy, torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,)), progress=False)
    assert G.shape == (6, model.conv.weight.numel())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_needs_eval_mode():
    model = make_model("mlp").train()
    with pytest.raises(ValueError, match="eval mode"):
        collect_gradients(model, select_pruned(model), F.nll_loss, torch.randn(2, 64), torch.zeros(2, dtype=torch.long))


def test_memory_refusal_names_the_estimate_and_the_knobs():
    with pytest.raises(UserError) as err:
        check_fisher_memory(10_000, 25_000_000, torch.float32, 64, torch.device("cpu"), max_memory_gb=1.0)
    message = str(err.value)
    assert "GiB" in message and "n=10000" in message
    for knob in ("pruner.n_samples", "pruner.max_memory_gb", "model.prune"):
        assert knob in message


def test_memory_estimate_within_limit_passes():
    need = check_fisher_memory(100, 1000, torch.float32, 64, torch.device("cpu"), max_memory_gb=1.0)
    assert need == 100 * 1000 * 4 + 2 * 64 * 1000 * 4


def test_non_finite_gradients_are_refused():
    G = torch.ones(4, 3)
    G[1, 2] = float("nan")
    with pytest.raises(UserError, match="1 of 4 Fisher gradients"):
        check_finite_gradients(G)
