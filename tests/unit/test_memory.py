"""The memory planner: budgets, groups within the bound, chunk sizes, refusals."""

from __future__ import annotations

import random

import pytest
import torch

from chitalab.errors import UserError
from chitalab.fisher import GradientSource, memory
from chitalab.fisher import source as source_module
from chitalab.fisher.memory import GIB, IN_FLIGHT_SHARE, memory_budget, plan_fisher
from chitalab.models import MLPNet
from chitalab.pruning import ChitaBlockPruner
from tests.support import chita, prune_context


def test_budget_is_the_cap_or_half_of_the_free_memory(monkeypatch):
    assert memory_budget(2.0, torch.device("cpu")) == 2 * GIB
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * GIB)
    assert memory_budget(None, torch.device("cpu")) == 5 * GIB


@pytest.mark.parametrize("seed", range(20))
def test_groups_cover_the_columns_at_cuts_and_stay_within_the_budget(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 300) for _ in range(rng.randint(1, 8))]
    p = sum(sizes)
    cuts = sorted({*rng.sample(range(1, p), min(p - 1, rng.randint(0, 12))), p})
    n, act, workspace = rng.randint(1, 50), rng.randint(0, 5000), rng.randint(0, 1000)
    budget = rng.randint(5_000, 150_000)
    try:
        plan = plan_fisher(n, sizes, cuts, torch.float32, 16, act, budget, workspace)
    except UserError:
        return  # some block is too large for this budget: refusing is right
    assert plan.groups[0][0] == 0 and plan.groups[-1][1] == p
    assert all(a[1] == b[0] for a, b in zip(plan.groups, plan.groups[1:]))
    assert all(stop in cuts for _, stop in plan.groups)
    for (start, stop), stored, in_flight in zip(plan.groups, plan.stored, plan.in_flight):
        assert stored == n * (stop - start) * 4
        assert stored + in_flight + workspace <= budget
    assert plan.peak_bytes <= budget
    # Greedy is minimal: extending any group to the next cut would exceed the budget.
    for start, stop in plan.groups[:-1]:
        nxt = cuts[cuts.index(stop) + 1]
        touched = sum(size for size, offset in zip(sizes, _offsets(sizes)) if offset < nxt and offset + size > start)
        assert n * (nxt - start) * 4 + plan.chunk_size * (4 * touched + 2 * act) + workspace > budget


def _offsets(sizes: list[int]) -> list[int]:
    return [sum(sizes[:i]) for i in range(len(sizes))]


def test_storage_dtype_and_chunk_size_enter_the_accounting():
    half = plan_fisher(10, [1000], [1000], torch.bfloat16, 4, 0, GIB)
    assert half.stored == [10 * 1000 * 2] and half.chunk_size == 4
    assert half.in_flight == [4 * 1000 * 4]
    # Huge activations: the chunk shrinks so one chunk in flight stays within budget / IN_FLIGHT_SHARE.
    plan = plan_fisher(100, [1000], [1000], torch.float32, 64, 10**6, 64 * 10**6)
    assert plan.chunk_size * (4 * 1000 + 2 * 10**6) <= 64 * 10**6 / IN_FLIGHT_SHARE
    assert plan.chunk_size == 3 and plan.in_flight == [3 * (4 * 1000 + 2 * 10**6)]


def test_a_solver_workspace_per_column_makes_smaller_groups():
    """A block search holds each group's Gram rows: 3 groups of 100 columns fit with G alone, and
    with 20 more bytes per column the same budget holds only 2 of the 3 tensors' columns at once."""
    sizes, cuts = [100, 100, 100], [100, 200, 300]
    budget = 10 * 300 * 4 + 4 * 300
    assert plan_fisher(10, sizes, cuts, torch.float32, 1, 0, budget).groups == [(0, 300)]
    plan = plan_fisher(10, sizes, cuts, torch.float32, 1, 0, budget, column_workspace=20)
    assert plan.groups == [(0, 200), (200, 300)] and plan.stored[0] == (10 * 4 + 20) * 200


def test_tight_budget_splits_into_groups_and_a_tighter_one_is_refused_with_the_knobs():
    sizes = [100, 100, 100]
    plan = plan_fisher(10, sizes, [100, 200, 300], torch.float32, 1, 0, 10 * 100 * 4 + 4 * 100)
    assert plan.groups == [(0, 100), (100, 200), (200, 300)]
    with pytest.raises(UserError) as err:
        plan_fisher(10, sizes, [300], torch.float32, 1, 0, 10_000, hint="; lower pruner.block_size")
    message = str(err.value)
    assert "GiB" in message and "n=10 x 300 weights" in message and "gradients.max_memory_gb" in message
    assert message.endswith("lower pruner.block_size")


def test_pruner_refuses_a_fisher_that_does_not_fit_naming_the_estimate_and_the_knobs():
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4)
    ctx = prune_context(model, torch.randn(50, 64), torch.randint(0, 4, (50,)))
    with pytest.raises(UserError) as err:
        chita(n_samples=50, max_memory_gb=1e-5).prune(ctx, 0.5)
    message = str(err.value)
    assert "GiB" in message and "n=50" in message
    for knob in ("pruner=chita_block", "gradients.n_samples", "gradients.max_memory_gb", "model.prune"):
        assert knob in message


def test_block_pruner_keeps_every_group_of_gradients_within_the_budget(monkeypatch):
    """Measured on the gradients the pruner actually holds, against the plan's own bound."""
    torch.manual_seed(0)
    model = MLPNet(64, [32, 16], 4)
    x, y = torch.randn(40, 64), torch.randint(0, 4, (40,))
    held = []
    collect = source_module.collect_gradients

    def recording(*args, **kwargs):
        G = collect(*args, **kwargs)
        held.append(G.nbytes)
        return G

    monkeypatch.setattr(source_module, "collect_gradients", recording)
    budget_gb = 120_000 / GIB
    for dead_columns, passes in (("keep", 1), ("drop", 2)):  # dropping dead columns needs their norms first
        held.clear()
        bounded = ChitaBlockPruner(
            GradientSource(n_samples=40, max_memory_gb=budget_gb), l2=1e-3, block_size=64, dead_columns=dead_columns
        )
        result = bounded.prune(prune_context(model, x, y), 0.7)
        plan = result.stats["memory_plan"]
        assert passes * plan["groups"] == len(held) > passes
        assert max(held) <= budget_gb * GIB and plan["peak_gib"] <= budget_gb
        unbounded = ChitaBlockPruner(
            GradientSource(n_samples=40), l2=1e-3, block_size=64, dead_columns=dead_columns
        ).prune(prune_context(model, x, y), 0.7)
        torch.testing.assert_close(result.weights, unbounded.weights)
        assert result.stats["objective"] == pytest.approx(unbounded.stats["objective"], rel=1e-5)
