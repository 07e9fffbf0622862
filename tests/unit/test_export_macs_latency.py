"""MACs against hand-computed values; sparse layers equal dense ones; timing helpers; 2:4."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chitalab.export.latency import (
    SparseConv2d,
    SparseLinear,
    break_even,
    interleaved_medians,
    layer_sweep,
    measure_latency,
    sparsify,
)
from chitalab.export.macs import measure_layer_macs, total_macs
from chitalab.export.semi_structured import (
    compress_2_4,
    decompress_2_4,
    is_2_4,
    prune_2_4,
    semi_structured_compatible,
    to_semi_structured,
)
from chitalab.models import MLPNet


class TinyConvNet(nn.Module):
    """conv 3->4 (3x3, stride 2, pad 1) on 8x8 -> 4x4x4, flatten, linear 64->5."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny_pruned() -> TinyConvNet:
    torch.manual_seed(0)
    net = TinyConvNet().eval()
    with torch.no_grad():
        net.conv.weight.view(-1)[:54] = 0  # 108 weights, 54 left
        net.fc.weight.view(-1)[:256] = 0  # 320 weights, 64 left
    return net


def test_macs_match_hand_computed_values():
    net = tiny_pruned()
    layers = measure_layer_macs(net, torch.randn(3, 3, 8, 8), ["conv.weight", "fc.weight"])
    conv, fc = layers
    # conv: each of 4·3·3·3 = 108 weights is used at 4·4 = 16 output positions
    assert (conv.weights, conv.uses_per_weight, conv.dense_macs) == (108, 16, 108 * 16)
    assert conv.sparse_macs == 54 * 16 and conv.nonzero == 54 and conv.kind == "conv"
    assert (fc.weights, fc.uses_per_weight, fc.dense_macs, fc.sparse_macs) == (320, 1, 320, 64)
    assert total_macs(layers) == {"dense": 1728 + 320, "sparse": 864 + 64}


def test_macs_count_tokens_for_sequence_inputs():
    net = nn.Sequential(nn.Linear(8, 6))
    (layer,) = measure_layer_macs(net, torch.randn(2, 7, 8))  # 7 tokens per sample
    assert layer.uses_per_weight == 7 and layer.dense_macs == 48 * 7


def test_sparse_layers_compute_what_dense_ones_do():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1, dilation=1)
    x = torch.randn(3, 6, 11, 9)
    assert torch.allclose(SparseConv2d(conv)(x), conv(x), atol=1e-5)
    linear = nn.Linear(7, 4)
    for xs in (torch.randn(2, 3, 7), torch.randn(1, 7)):  # several rows, and the one-row kernel
        assert torch.allclose(SparseLinear(linear)(xs), linear(xs), atol=1e-6)
    net = tiny_pruned()
    x = torch.randn(4, 3, 8, 8)
    sparse = sparsify(net, ["conv.weight", "fc.weight"])
    assert isinstance(sparse.conv, SparseConv2d) and isinstance(sparse.fc, SparseLinear)
    assert isinstance(net.conv, nn.Conv2d)  # the original is untouched
    assert torch.allclose(sparse(x), net(x), atol=1e-5)


def test_depthwise_convolutions_stay_dense():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    assert isinstance(sparsify(net, ["0.weight"])[0], nn.Conv2d)


def test_interleaved_medians_respect_repeats_and_budget():
    calls = {"a": 0, "b": 0}

    def bump(name):
        calls[name] += 1

    medians, rounds = interleaved_medians({"a": lambda: bump("a"), "b": lambda: bump("b")}, repeats=5, warmup=1)
    assert rounds == 5 and calls == {"a": 6, "b": 6} and set(medians) == {"a", "b"}
    _, rounds = interleaved_medians({"a": lambda: sum(range(10_000))}, repeats=1000, min_repeats=3, budget_s=0.0)
    assert rounds == 3


def test_measure_latency_reports_dense_sparse_and_fastest_per_batch():
    net = MLPNet(64, (16, 8), 4).eval()
    with torch.no_grad():
        net.fc1.weight[:, :48] = 0
    result = measure_latency(
        net, ["fc1.weight", "fc2.weight", "fc3.weight"], torch.randn(5, 64), (1, 3), repeats=3, threads=1
    )
    assert result["threads"] == 1 and set(result["batches"]) == {"1", "3"}
    for entry in result["batches"].values():
        assert entry["dense_ms"] > 0 and entry["sparse_ms"] > 0 and entry["fastest_ms"] > 0
        assert [layer["name"] for layer in entry["layers"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
        assert entry["layers"][0]["sparsity"] == pytest.approx(0.75)


def test_layer_sweep_and_break_even():
    rows = layer_sweep("conv", (4, 4, 3, 3), (1, 4, 6, 6), (0.5, 0.9), repeats=3, threads=1)
    assert [r["sparsity"] for r in rows] == [0.5, 0.9] and rows[0]["im2col_ms"] > 0
    rows = [{"sparsity": s, "speedup": v} for s, v in ((0.5, 0.5), (0.8, 0.5), (0.9, 2.0), (0.95, 4.0))]
    assert break_even(rows) == pytest.approx(0.85)  # log(0.5) → log(2): crosses 1 half way
    assert break_even([{"sparsity": 0.5, "speedup": 0.3}, {"sparsity": 0.99, "speedup": 0.9}]) is None
    assert break_even([{"sparsity": 0.5, "speedup": 1.3}, {"sparsity": 0.9, "speedup": 3}]) == 0.5
    # a noisy win below a loss does not count: the break-even is where sparse stays faster
    rows = [{"sparsity": s, "speedup": v} for s, v in ((0.5, 1.1), (0.7, 0.8), (0.9, 1.25))]
    assert 0.7 < break_even(rows) < 0.9


def test_2_4_compression_round_trips_on_cpu():
    torch.manual_seed(0)
    weight = prune_2_4(torch.randn(64, 128))
    assert is_2_4(weight) and not is_2_4(torch.randn(64, 128))
    assert float((weight == 0).float().mean()) == 0.5
    weight[0, :4] = torch.tensor([0.0, 0.0, 0.0, 3.0])  # fewer than 2 nonzeros in a group
    values, positions = compress_2_4(weight)
    assert values.shape == (64, 64) and positions.shape == (64, 64) and positions.dtype == torch.uint8
    assert int(positions.max()) <= 3
    assert torch.equal(decompress_2_4(values, positions, weight.shape), weight)
    linear = nn.Linear(128, 64)
    with torch.no_grad():
        linear.weight.copy_(weight)
    assert semi_structured_compatible(linear)
    assert not semi_structured_compatible(nn.Linear(100, 64))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal; the CUDA path needs a GPU test")
def test_semi_structured_conversion_needs_cuda():
    from chitalab.errors import UserError

    with pytest.raises(UserError, match="CUDA"):
        to_semi_structured(nn.Sequential(nn.Linear(128, 64)), ["0.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need a CUDA GPU")
def test_semi_structured_matches_dense_on_cuda():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(128, 64))
    with torch.no_grad():
        net[0].weight.copy_(prune_2_4(net[0].weight))
    sparse, converted = to_semi_structured(net, ["0.weight"])
    x = torch.randn(32, 128)
    assert converted == ["0.weight"]
    assert torch.allclose(sparse(x.half().cuda()).float().cpu(), net(x), atol=1e-2)
