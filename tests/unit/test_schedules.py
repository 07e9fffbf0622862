"""Sparsity schedules, pruning epochs and the cosine LR with restarts."""

from __future__ import annotations

import pytest

from chitalab.errors import ArgumentError, UserError
from chitalab.pruning import MagnitudePruner, MultiStagePruner
from chitalab.pruning.schedules import SPARSITY_SCHEDULES, pruning_epochs, sparsity_levels
from chitalab.training.lr import cosine_with_restarts


@pytest.mark.parametrize("kind", [k for k in SPARSITY_SCHEDULES if k != "constant"])
@pytest.mark.parametrize("stages", [2, 5, 10])
def test_levels_run_from_base_to_target_monotonically(kind, stages):
    levels = sparsity_levels(kind, 0.1, 0.98, stages)
    assert len(levels) == stages
    assert levels[0] == pytest.approx(0.1) and levels[-1] == 0.98
    assert all(a <= b for a, b in zip(levels, levels[1:]))


def test_cubic_is_zhu_gupta_and_front_loaded():
    levels = sparsity_levels("cubic", 0.5, 0.9, 5)
    assert levels[1] == pytest.approx(0.9 + (0.5 - 0.9) * (1 - 0.25) ** 3)
    linear = sparsity_levels("linear", 0.5, 0.9, 5)
    assert all(c >= lin for c, lin in zip(levels, linear))


def test_exponential_shrinks_density_geometrically():
    levels = sparsity_levels("exponential", 0.5, 0.98, 3)
    assert 1 - levels[1] == pytest.approx(((1 - 0.5) * (1 - 0.98)) ** 0.5)


def test_single_stage_and_constant_go_to_the_target():
    assert sparsity_levels("cubic", 0.1, 0.9, 1) == [0.9]
    assert sparsity_levels("constant", 0.1, 0.9, 3) == [0.9, 0.9, 0.9]


@pytest.mark.parametrize(
    "args,message",
    [
        (("cubic", 0.1, 0.9, 0), "number of stages=0"),
        (("cubic", 0.95, 0.9, 3), "base_level=0.95"),
    ],
)
def test_bad_schedules_are_refused(args, message):
    with pytest.raises(UserError, match=message):
        sparsity_levels(*args)


def test_an_unknown_kind_is_a_programming_error_here_and_a_user_error_where_it_is_configured():
    with pytest.raises(ValueError, match="got 'quartic'"):
        sparsity_levels("quartic", 0.1, 0.9, 3)
    with pytest.raises(ArgumentError, match="^schedule='quartic' is not allowed; choose one of: cubic"):
        MultiStagePruner(MagnitudePruner(), schedule="quartic")


def test_pruning_epochs():
    assert pruning_epochs(0, 12, 7) == [0, 12, 24, 36, 48, 60, 72]
    with pytest.raises(ArgumentError, match="^prune_every=0"):
        pruning_epochs(0, 0, 3)


def test_cosine_restarts_at_each_pruning_step_and_decays_to_the_end():
    restarts, total, low = [0, 10, 20], 40, 0.01
    for r in restarts:
        assert cosine_with_restarts(r, restarts, total, low) == pytest.approx(1.0)
    assert cosine_with_restarts(9, restarts, total, low) < 0.05
    assert cosine_with_restarts(40, restarts, total, low) == pytest.approx(low)
    segment = [cosine_with_restarts(s, restarts, total, low) for s in range(20, 41)]
    assert all(a >= b for a, b in zip(segment, segment[1:]))
