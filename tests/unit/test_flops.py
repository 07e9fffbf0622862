"""The MAC budget against brute force: the Lagrangian projection is feasible and within its
reported gap of the exact knapsack; every pruner ends within the budget."""

from __future__ import annotations

import pytest
import torch

from chitalab.errors import ArgumentError
from chitalab.models import MLPNet
from chitalab.solver import IHT, ActiveSet, Backsolve, FlopBudget
from tests.support import every_pruner, prune_context
from tests.support.patterns import best_mask_energy

SHAPES, MACS = [(2, 3), (1, 4)], [5, 2]  # 6 weights of 5 MACs, 4 of 2: 38 MACs dense
COST = torch.tensor([5] * 6 + [2] * 4)


@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.7, 1.0])
@pytest.mark.parametrize("weight_budget", [False, True])
def test_projection_is_feasible_and_within_its_gap_of_the_exact_knapsack(fraction, weight_budget):
    constraint = FlopBudget(SHAPES, MACS, flops_fraction=fraction, weight_budget=weight_budget)
    assert constraint.dense_macs == 38 and constraint.budget == int(fraction * 38)
    gen = torch.Generator().manual_seed(int(fraction * 100) + weight_budget)
    for _ in range(4):
        v = torch.randn(10, generator=gen, dtype=torch.float64)
        for k in (3, 6, 10) if weight_budget else (10,):

            def allowed(mask, k=k):
                return int(mask.sum()) <= k and int(COST[mask].sum()) <= constraint.budget

            mask, gap = constraint.projection(v, k)
            kept = float((v[mask] ** 2).sum())
            optimum = best_mask_energy(v, allowed)
            assert allowed(mask) and constraint.is_feasible(v.masked_fill(~mask, 0), k)
            assert kept <= optimum + 1e-12 and optimum <= kept + gap + 1e-9
            if fraction == 1.0 and k == 10:
                assert gap == 0 and kept == pytest.approx(float((v**2).sum()))


def test_alone_the_budget_fixes_no_weight_count_and_checks_report_the_macs():
    alone = FlopBudget(SHAPES, MACS, flops_fraction=0.5)
    assert alone.fixed_keep() == 10 and FlopBudget(SHAPES, MACS, weight_budget=True).fixed_keep() is None
    w = torch.tensor([1.0, 0, 0, 0, 0, 2.0, 0, 3.0, 0, 0])
    assert alone.check(w, 10) == {
        "holds": True,
        "nonzero": 3,
        "k": 10,
        "macs": 12,
        "macs_budget": 19,
        "macs_fraction": 12 / 38,
    }


@pytest.mark.parametrize(
    ("kwargs", "bad"), [({"flops_fraction": 0}, "flops_fraction"), ({"flops_fraction": 1.5}, "flops_fraction")]
)
def test_bad_values_are_one_clear_error(kwargs, bad):
    with pytest.raises(ArgumentError) as err:
        FlopBudget(SHAPES, MACS, **kwargs)
    assert str(err.value).startswith(f"{bad}=")


def test_every_pruner_ends_within_the_mac_budget_and_records_the_gap():
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4)
    x, y = torch.randn(80, 64), torch.randint(0, 4, (80,))
    shapes = prune_context(model, x, y).pruned.shapes
    constraint = FlopBudget(shapes, [3, 1, 2], flops_fraction=0.3)  # priced unlike their sizes
    pruners = every_pruner([ActiveSet(iterations=5), IHT(iterations=5), Backsolve()], base_level=None)
    for pruner in pruners:
        net = MLPNet(64, [16, 8], 4)
        net.load_state_dict(model.state_dict())
        ctx = prune_context(net, x, y, constraint=constraint)
        result = pruner.prune(ctx, 0.0)
        assert constraint.is_feasible(result.weights, ctx.pruned.numel), pruner.label()
        assert constraint.macs(result.weights) > 0.9 * constraint.budget, pruner.label()  # the budget is used
        assert result.stats["bound_pattern"]["projection_gap"] >= 0, pruner.label()
