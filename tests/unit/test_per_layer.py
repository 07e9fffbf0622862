"""Per-layer budgets against brute force: the knapsack allocation against enumeration, the caps
projection against every support, and every pruner ending within its budgets."""

from __future__ import annotations

import itertools

import pytest
import torch

from chitalab.errors import ArgumentError
from chitalab.models import MLPNet
from chitalab.params import keep_count
from chitalab.pruning import MultiStagePruner
from chitalab.solver import ActiveSet, Backsolve, PerLayer, allocate, layer_loss
from tests.support import every_pruner, prune_context
from tests.support.patterns import best_mask_energy

SHAPES = [(2, 3), (1, 4), (3, 1)]  # 6 + 4 + 3 = 13 weights in three layers
LAYERS = (slice(0, 1024), slice(1024, 1152), slice(1152, 1184))  # MLPNet(64, [16, 8], 4)


def test_the_knapsack_allocation_is_the_enumerated_optimum():
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        layers, choices = 3, 4
        errors = torch.rand(layers, choices, generator=gen, dtype=torch.float64)
        costs = torch.randint(0, 7, (layers, choices), generator=gen)
        budget = int(torch.randint(int(costs.min(dim=1).values.sum()), 19, (1,), generator=gen))
        chosen = allocate(errors, costs, budget)

        def total(table, pick):
            return sum(float(table[layer, j]) for layer, j in enumerate(pick))

        best = min(
            total(errors, pick)
            for pick in itertools.product(range(choices), repeat=layers)
            if total(costs, pick) <= budget
        )
        assert total(costs, chosen) <= budget
        assert total(errors, chosen) == pytest.approx(best), trial
    with pytest.raises(ValueError):
        allocate(torch.zeros(2, 2), torch.full((2, 2), 5), 9)


def test_uniform_keeps_each_layers_share_and_caps_is_the_best_support_with_floors():
    gen = torch.Generator().manual_seed(1)
    owner = torch.tensor([0] * 6 + [1] * 4 + [2] * 3)
    uniform = PerLayer(SHAPES)
    caps = PerLayer(SHAPES, mode="caps", max_layer_sparsity=0.5)  # floors 3, 2, 2
    for _ in range(3):
        v = torch.randn(13, generator=gen, dtype=torch.float64)
        for k in range(7, 14):
            shares = uniform.layer_budgets(k)
            assert sum(shares) == k and all(abs(s - k * n / 13) < 1 for s, n in zip(shares, (6, 4, 3)))
            mask = uniform.support_mask(v, k)
            assert [int(mask[owner == layer].sum()) for layer in range(3)] == shares

            def allowed(m, k=k):
                counts = [int(m[owner == layer].sum()) for layer in range(3)]
                return int(m.sum()) <= k and all(c >= f for c, f in zip(counts, (3, 2, 2)))

            mask = caps.support_mask(v, k)
            assert allowed(mask) and caps.is_feasible(v.masked_fill(~mask, 0), k)
            assert float((v[mask] ** 2).sum()) == pytest.approx(best_mask_energy(v, allowed))


def test_a_cap_that_leaves_too_many_weights_is_one_clear_error():
    caps = PerLayer(SHAPES, mode="caps", max_layer_sparsity=0.5)
    with pytest.raises(ArgumentError, match=r"^max_layer_sparsity=0.5 keeps at least 7 weights, more than the 6"):
        caps.check_budget(6)
    with pytest.raises(ArgumentError, match="^max_layer_sparsity=null is not allowed with mode=caps"):
        PerLayer(SHAPES, mode="caps")
    with pytest.raises(ArgumentError, match="^mode='global' is not allowed"):
        PerLayer(SHAPES, mode="global")


def test_allocation_follows_the_proxies_and_uses_the_whole_budget():
    """A layer whose loss model is 100 times steeper gets more of the budget than uniform."""
    shapes = [(4, 25), (4, 25)]
    constraint = PerLayer(shapes, mode="allocated", densities=[0.1 * i for i in range(1, 11)], resolution=200)
    w_bar = torch.randn(200, generator=torch.Generator().manual_seed(2))
    scale = torch.cat([torch.full((100,), 100.0), torch.ones(100)])

    def loss(start, stop, deltas):
        return 0.5 * (deltas * deltas * scale[start:stop]).sum(dim=1)

    bound = constraint.bind(w_bar, 80, loss)
    assert sum(bound.budgets) == 80 and bound.budgets[0] > bound.budgets[1]
    w, _ = bound.project(w_bar, 80)
    assert bound.is_feasible(w, 80) and int((w[:100] != 0).sum()) == bound.budgets[0]
    assert bound.settings()["budgets"] == bound.budgets and len(bound.settings()["proxies"]) == 2


def test_layer_loss_is_the_quadratic_model_of_the_move():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    deltas = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    found = layer_loss(G, 0.1, torch.float64)(2, 6, deltas)
    for j in range(3):
        d = torch.zeros(10, dtype=torch.float64)
        d[2:6] = deltas[j]
        assert float(found[j]) == pytest.approx(0.5 * float((G @ d) @ (G @ d)) + 0.5 * 7 * 0.1 * float(d @ d))


@pytest.mark.parametrize("mode", ["uniform", "caps", "allocated"])
def test_every_pruner_keeps_the_per_layer_budgets(mode):
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4)
    x, y = torch.randn(80, 64), torch.randint(0, 4, (80,))
    shapes = prune_context(model, x, y).pruned.shapes
    constraint = PerLayer(shapes, mode=mode, max_layer_sparsity=0.85 if mode == "caps" else None)
    pruners = every_pruner([ActiveSet(iterations=10), Backsolve()])
    for pruner in pruners:
        net = MLPNet(64, [16, 8], 4)
        net.load_state_dict(model.state_dict())
        ctx = prune_context(net, x, y, constraint=constraint)
        k = keep_count(0.8, ctx.pruned.numel)
        result = pruner.prune(ctx, 0.8)
        counts = [int((result.weights[layer] != 0).sum()) for layer in LAYERS]
        assert sum(counts) <= k, pruner.label()
        if mode == "allocated":
            if not isinstance(pruner, MultiStagePruner):  # each stage allocates anew
                budgets = result.stats["bound_pattern"]["budgets"]
                assert sum(budgets) == k and all(c <= b for c, b in zip(counts, budgets)), pruner.label()
        else:
            assert constraint.is_feasible(result.weights, k), pruner.label()
            if mode == "uniform":
                assert all(c <= b for c, b in zip(counts, constraint.layer_budgets(k))), pruner.label()
