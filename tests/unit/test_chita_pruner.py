"""The CHITA pruners around their solvers: dead gradient columns, the swap solver, recorded settings."""

from __future__ import annotations

import pytest
import torch

from chitalab.fisher import GradientSource
from chitalab.models import MLPNet
from chitalab.pruning import ChitaBlockPruner, ChitaPruner, WoodFisherPruner
from chitalab.solver import ActiveSet, Backsolve, Swap
from tests.extensions import PerTensorTopK
from tests.support import prune_context


def net_with_a_dead_unit() -> tuple[MLPNet, torch.Tensor, torch.Tensor]:
    """fc1's unit 0 never fires on positive inputs (large negative weights), so its weights and
    the fc2 weights it feeds have zero gradients, while their magnitudes are the largest."""
    torch.manual_seed(0)
    net = MLPNet(64, [16, 8], 4)
    with torch.no_grad():
        net.fc1.weight[0] = -3.0
        net.fc2.weight[:, 0] = 3.0
    x, y = torch.rand(200, 64), torch.randint(0, 4, (200,))
    return net, x, y


def dead_mask(net: MLPNet) -> torch.Tensor:
    masks = [torch.zeros_like(net.fc1.weight, dtype=torch.bool), torch.zeros_like(net.fc2.weight, dtype=torch.bool)]
    masks[0][0] = True
    masks[1][:, 0] = True
    return torch.cat([m.flatten() for m in masks] + [torch.zeros(net.fc3.weight.numel(), dtype=torch.bool)])


@pytest.mark.parametrize("solver", [Backsolve(), ActiveSet(iterations=20), Swap()])
def test_dead_columns_are_pruned_unless_the_pruner_keeps_them(solver):
    net, x, y = net_with_a_dead_unit()
    dead = dead_mask(net)
    drop = ChitaPruner(GradientSource(n_samples=128), solver, l2=1e-3).prune(prune_context(net, x, y), 0.8)
    assert drop.stats["dead_columns_left_out"] >= int(dead.sum()) == 72  # other units may never fire too
    assert not drop.weights[dead].any()
    keep = ChitaPruner(GradientSource(n_samples=128), solver, l2=1e-3, dead_columns="keep")
    kept = keep.prune(prune_context(net, x, y), 0.8)
    assert kept.stats["dead_columns_left_out"] == 0 and kept.weights[dead].any()  # pinned at w̄, the largest


@pytest.mark.parametrize(
    "make",
    [
        lambda rule: ChitaBlockPruner(GradientSource(n_samples=128), l2=1e-3, block_size=64, dead_columns=rule),
        lambda rule: ChitaBlockPruner(
            GradientSource(n_samples=128, max_memory_gb=400_000 / 2**30), l2=1e-3, block_size=64, dead_columns=rule
        ),
        lambda rule: WoodFisherPruner(GradientSource(n_samples=128), l2=1e-3, block_size=64, dead_columns=rule),
    ],
    ids=["block", "block_in_groups", "woodfisher"],
)
def test_the_block_pruners_prune_dead_columns_too(make):
    net, x, y = net_with_a_dead_unit()
    dead = dead_mask(net)
    drop = make("drop").prune(prune_context(net, x, y), 0.8)
    assert drop.stats["dead_columns_left_out"] >= int(dead.sum()) == 72
    assert not drop.weights[dead].any()
    kept = make("keep").prune(prune_context(net, x, y), 0.8)
    assert kept.stats["dead_columns_left_out"] == 0 and kept.weights[dead].any()


def test_the_swap_search_lowers_the_backsolve_objective_and_keeps_k():
    net, x, y = net_with_a_dead_unit()
    k = int(0.2 * sum(p.numel() for p in (net.fc1.weight, net.fc2.weight, net.fc3.weight)))
    start = ChitaPruner(GradientSource(n_samples=128), Backsolve(), l2=1e-3).prune(prune_context(net, x, y), 0.8)
    swapped = ChitaPruner(GradientSource(n_samples=128), Swap(), l2=1e-3).prune(prune_context(net, x, y), 0.8)
    assert swapped.stats["objective"] <= start.stats["objective"]
    assert int((swapped.weights != 0).sum()) <= k


def test_under_a_structured_pattern_the_swap_solver_runs_its_fallback(caplog):
    net, x, y = net_with_a_dead_unit()
    constraint = PerTensorTopK([tuple(p.shape) for p in (net.fc1.weight, net.fc2.weight, net.fc3.weight)])
    swap = ChitaPruner(GradientSource(n_samples=64), Swap(fallback=Backsolve()), l2=1e-3)
    with caplog.at_level("INFO"):
        result = swap.prune(prune_context(net, x, y, constraint=constraint), 0.8)
    assert "solving with the fallback, backsolve" in caplog.text
    plain = ChitaPruner(GradientSource(n_samples=64), Backsolve(), l2=1e-3)
    torch.testing.assert_close(
        result.weights, plain.prune(prune_context(net, x, y, constraint=constraint), 0.8).weights
    )
    assert swap.settings()["solver"]["fallback"]["name"] == "backsolve"
