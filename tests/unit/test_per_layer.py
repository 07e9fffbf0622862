"""Per-layer budgets against brute force: the knapsack allocation against enumeration, the caps
projection against every support, and every pruner ending within its budgets."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from chitalab.errors import ArgumentError
from chitalab.models import MLPNet
from chitalab.params import keep_count
from chitalab.pruning import MultiStagePruner
from chitalab.solver import (
    ActiveSet,
    Backsolve,
    PerLayer,
    Problem,
    allocate,
    block_backsolve,
    fit_on_support,
    layer_blocks,
    layer_loss,
)
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

    def loss(w_bar, layers, entry, levels):  # ½ Σ scale·w̄² over each layer's pruned weights
        return torch.stack(
            [
                torch.stack([0.5 * (scale[a:b] * w_bar[a:b] ** 2 * (entry[a:b] > j)).sum() for j in range(levels)])
                for a, b in layers
            ]
        ).double()

    bound = constraint.bind(w_bar, 80, loss)
    assert sum(bound.budgets) == 80 and bound.budgets[0] > bound.budgets[1]
    w, _ = bound.project(w_bar, 80)
    assert bound.is_feasible(w, 80) and int((w[:100] != 0).sum()) == bound.budgets[0]
    settings = bound.settings()
    assert settings["budgets"] == bound.budgets and len(settings["proxies"]) == 2 and settings["proxy"] == "refitted"
    data_free = constraint.bind(w_bar, 80, None)  # MP: the magnitude error, the same model with scale 1
    assert data_free.settings()["proxy"] == "magnitude"
    scale.fill_(1.0)
    assert torch.allclose(constraint.proxies(w_bar, None)[0], constraint.proxies(w_bar, loss)[0])


def explicit_refit(G, w_bar, l2, blocks, layer, support):
    """The objective of the block-diagonal CHITA model with layer `layer` = (start, stop) kept
    only on `support` (flat indices) and refitted block by block, every other weight at w̄:
    each block's exact ridge fit through `fit_on_support`, summed over the blocks."""
    keep = torch.ones(w_bar.numel(), dtype=torch.bool)
    keep[layer[0] : layer[1]] = False
    keep[support] = True
    total = 0.0
    for b0, b1 in blocks:
        if b0 < layer[0] or b1 > layer[1]:
            continue
        problem = Problem.from_gradients(G[:, b0:b1], w_bar[b0:b1], l2)
        fit = fit_on_support(problem, torch.nonzero(keep[b0:b1]).flatten())
        total += problem.objective(fit)
    return total


@pytest.mark.parametrize("n", [40, 5])  # blocks with fewer weights than samples, then more
@pytest.mark.parametrize("block_size", [None, 4])
def test_the_refitted_proxy_is_the_explicit_refit_on_the_layers_top_magnitudes(n, block_size):
    shapes = [(3, 4), (2, 5), (4, 3)]
    gen = torch.Generator().manual_seed(4)
    G = torch.randn(n, 34, generator=gen, dtype=torch.float64)
    w_bar = torch.randn(34, generator=gen, dtype=torch.float64)
    constraint = PerLayer(shapes, mode="allocated", densities=[0.2, 0.5, 0.75, 1.0])
    layers = [(0, 12), (12, 22), (22, 34)]
    blocks = layers if block_size is None else layer_blocks(shapes, block_size)
    l2 = 0.05
    errors, costs = constraint.proxies(w_bar, layer_loss(G, l2, None if block_size is None else blocks))
    for layer, (a, b) in enumerate(layers):
        order = a + torch.argsort(w_bar[a:b].abs(), descending=True)
        for j in range(4):
            kept = order[: int(costs[layer, j])]
            assert float(errors[layer, j]) == pytest.approx(
                explicit_refit(G, w_bar, l2, blocks, (a, b), kept), rel=1e-9
            )
    # Read per column group through a column source, the blocks' result is the same.
    if block_size is not None:
        calls = []

        def columns(start, stop):
            calls.append((start, stop))
            return G[:, start:stop]

        grouped = layer_loss(columns, l2, blocks, [(0, 12), (12, 34)])
        assert torch.allclose(constraint.proxies(w_bar, grouped)[0], errors, rtol=1e-12)
        assert calls == [(0, 12), (12, 34)]


def test_the_allocation_is_the_best_block_backsolve_over_the_grid():
    """On a grid small enough to enumerate, the knapsack over the refitted proxies picks the
    densities whose block backsolve has the least objective, its proxies add up to that
    objective, and the backsolve on the bound constraint reaches at most that."""
    shapes = [(2, 6), (3, 4), (2, 5)]
    densities = [0.25, 0.5, 0.75, 1.0]
    gen = torch.Generator().manual_seed(5)
    G = torch.randn(30, 34, generator=gen, dtype=torch.float64)
    G[:, :12] *= 3.0  # one layer much steeper than the others
    w_bar = torch.randn(34, generator=gen, dtype=torch.float64)
    blocks, l2 = layer_blocks(shapes, 6), 0.02
    constraint = PerLayer(shapes, mode="allocated", densities=densities, resolution=34)  # unit: one weight
    _, costs = constraint.proxies(w_bar, None)
    for k in (12, 17, 21, 26):
        bound = constraint.bind(w_bar, k, layer_loss(G, l2, blocks))
        best = float("inf")
        for pick in itertools.product(range(4), repeat=3):
            budgets = [int(costs[layer, j]) for layer, j in enumerate(pick)]
            if sum(budgets) > k:
                continue
            fixed = copy.copy(constraint)
            fixed.budgets = budgets
            best = min(best, block_backsolve(w_bar, k, blocks, G, l2, dtype=torch.float64, constraint=fixed).objective)
        assert bound.proxy_total == pytest.approx(best, rel=1e-9), k
        achieved = block_backsolve(w_bar, k, blocks, G, l2, dtype=torch.float64, constraint=bound)
        assert achieved.objective <= best * (1 + 1e-9) and sum(bound.budgets) == k


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
