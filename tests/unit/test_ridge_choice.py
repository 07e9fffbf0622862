"""The ridge λ chosen on held-out training samples: grids in the CHITA pruners, the solvers' ridge
paths, and the recorded choice."""

from __future__ import annotations

import pytest
import torch

from chitalab.errors import ArgumentError
from chitalab.fisher import GradientSource
from chitalab.pruning import ChitaBlockPruner, ChitaPruner, RidgeChoice
from chitalab.pruning.ridge_choice import AUTO_GRID, l2_grid
from chitalab.solver import (
    GLOBAL_TOP_K,
    Backsolve,
    Swap,
    backsolve,
    block_backsolve,
    block_backsolve_path,
    layer_blocks,
)
from chitalab.solver.ridge import with_l2
from tests.support import prune_context
from tests.support.brute_force import make_problem
from tests.unit.test_chita_pruner import net_with_a_dead_unit

GRID = [1e-5, 1e-3, 1e-1]
HELD_OUT = RidgeChoice(samples=150)


def test_l2_may_be_a_number_a_grid_or_auto():
    assert l2_grid("l2", 1e-3) == [1e-3]
    assert l2_grid("l2", [1e-3, 1e-4, 1e-3]) == [1e-4, 1e-3]
    assert l2_grid("l2", "auto") == list(AUTO_GRID)
    for bad, message in (
        ("big", "l2='big' is not allowed; give a number, a list of numbers or auto"),
        ([], "l2=[] is not allowed"),
        ([1e-3, -1.0], "l2=-1.0 is not allowed"),
        (True, "l2=True is not allowed"),
    ):
        with pytest.raises(ArgumentError, match=message.replace("[", r"\[").replace("]", r"\]")):
            l2_grid("l2", bad)


def held_out_losses(stats: dict) -> dict[float, float]:
    return {float(key): loss for key, loss in stats["l2_heldout_losses"].items()}


@pytest.mark.parametrize(
    "make",
    [
        lambda l2: ChitaPruner(GradientSource(n_samples=128), Backsolve(), l2=l2, ridge_choice=HELD_OUT),
        lambda l2: ChitaPruner(GradientSource(n_samples=128), Swap(), l2=l2, ridge_choice=HELD_OUT),
        lambda l2: ChitaBlockPruner(GradientSource(n_samples=128), l2=l2, block_size=64, ridge_choice=HELD_OUT),
    ],
    ids=["backsolve", "swap", "block"],
)
def test_a_grid_keeps_the_ridge_of_lowest_held_out_loss_and_records_every_candidate(make):
    net, x, y = net_with_a_dead_unit()
    pruner = make(GRID)
    assert pruner.settings()["l2"] == GRID and pruner.settings()["ridge_choice"] == HELD_OUT.settings()
    result = pruner.prune(prune_context(net, x, y), 0.8)
    losses = held_out_losses(result.stats)
    assert sorted(losses) == GRID and len(set(losses.values())) == len(GRID)  # the candidates differ
    chosen = result.stats["l2_chosen"]
    assert losses[chosen] == min(losses.values())
    alone = make(chosen).prune(prune_context(net, x, y), 0.8)
    assert "l2_chosen" not in alone.stats
    torch.testing.assert_close(result.weights, alone.weights)
    assert result.stats["objective"] == pytest.approx(alone.stats["objective"], rel=1e-6)


def test_the_held_out_draw_is_its_own_sample_stream():
    net, x, y = net_with_a_dead_unit()
    ctx = prune_context(net, x, y)
    drawn = []
    ctx.draw = lambda purpose, count: drawn.append(purpose) or (x[:count], y[:count])  # type: ignore[method-assign]
    ChitaPruner(GradientSource(n_samples=64), Backsolve(), l2=GRID, ridge_choice=HELD_OUT).prune(ctx, 0.8)
    assert drawn == ["fisher", "ridge_search"]


def test_the_block_path_equals_one_block_solve_per_ridge():
    pr = make_problem(3, n=30, p=60)
    blocks = layer_blocks([(6, 10)], 20)
    path = block_backsolve_path(pr.w_bar, 25, blocks, pr.G, GRID, dtype=torch.float64)
    for l2, result in zip(GRID, path):
        alone = block_backsolve(pr.w_bar, 25, blocks, pr.G, l2, dtype=torch.float64)
        torch.testing.assert_close(result.w, alone.w)
        assert result.objective == pytest.approx(alone.objective, rel=1e-9)


def test_the_swap_path_never_ends_above_each_ridges_backsolve():
    pr = make_problem(5, n=20, p=40)
    problems = [with_l2(pr, l2) for l2 in GRID]
    for problem, result in zip(problems, Swap().solve_path(problems, 8, GLOBAL_TOP_K)):
        assert result.objective <= backsolve(problem, 8).objective * (1 + 1e-12)
        assert int((result.w != 0).sum()) <= 8


class PrefersSmallest(RidgeChoice):
    """Held-out losses that always put the choice at the grid's low edge, to drive the widening."""

    def heldout_losses(self, ctx, w_bar, candidates):
        return {l2: l2 for l2 in candidates}


def test_auto_widens_the_grid_while_the_choice_sits_at_its_edge_and_a_given_grid_does_not():
    from chitalab.pruning.ridge_choice import AUTO_LIMITS

    net, x, y = net_with_a_dead_unit()
    auto = ChitaPruner(GradientSource(n_samples=128), Backsolve(), l2="auto", ridge_choice=PrefersSmallest(samples=10))
    stats = auto.prune(prune_context(net, x, y), 0.8).stats
    tried = sorted(held_out_losses(stats))
    assert stats["l2_chosen"] == pytest.approx(AUTO_LIMITS[0]) and tried[0] == pytest.approx(AUTO_LIMITS[0])
    assert len(tried) == len(AUTO_GRID) + 3  # 1e-8, 1e-9, 1e-10
    given = ChitaPruner(GradientSource(n_samples=128), Backsolve(), l2=GRID, ridge_choice=PrefersSmallest(samples=10))
    assert sorted(held_out_losses(given.prune(prune_context(net, x, y), 0.8).stats)) == GRID
