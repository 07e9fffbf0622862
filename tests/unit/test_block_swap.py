"""The swap search over all blocks against enumeration of every support, and inside the block pruner."""

from __future__ import annotations

import itertools

import pytest
import torch

from chitalab.fisher import GradientSource
from chitalab.pruning import ChitaBlockPruner
from chitalab.solver import BlockSwap, block_backsolve, block_backsolve_path, block_swap_search, fit_on_support
from chitalab.solver.problem import Problem
from chitalab.solver.result import STOP_CONVERGED, STOP_WORK
from tests.support import prune_context
from tests.unit.test_chita_pruner import dead_mask, net_with_a_dead_unit

BLOCKS = [(0, 5), (5, 9), (9, 14)]
L2 = 1e-2


def block_problem(seed: int, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(0.7 * torch.randn(14, generator=gen, dtype=torch.float64))
    G = torch.randn(n, 14, generator=gen, dtype=torch.float64) * scale
    return G, torch.randn(14, generator=gen, dtype=torch.float64) ** 3


def block_objective(G: torch.Tensor, w_bar: torch.Tensor, support: list[int], known: dict | None = None) -> float:
    """Σ_b of the block's exact refit on its share of `support`. Each block's term depends only on
    its own share, so `known` (one dict per problem) keeps the terms an enumeration meets again."""
    known = {} if known is None else known
    total = 0.0
    for b0, b1 in BLOCKS:
        share = tuple(i - b0 for i in support if b0 <= i < b1)
        if (b0, share) not in known:
            problem = Problem.from_gradients(G[:, b0:b1], w_bar[b0:b1], L2)
            local = torch.tensor(share, dtype=torch.long)
            w = fit_on_support(problem, local) if share else torch.zeros(b1 - b0, dtype=torch.float64)
            known[(b0, share)] = problem.objective(w)
        total += known[(b0, share)]
    return total


def test_the_block_swap_search_reaches_the_enumerated_optimum_on_most_instances():
    reached, k = 0, 4
    for seed in range(24):
        G, w_bar = block_problem(seed)
        start = block_backsolve(w_bar, k, BLOCKS, G, L2, dtype=torch.float64)
        grams = [G[:, b0:b1].T @ G[:, b0:b1] for b0, b1 in BLOCKS]
        result = block_swap_search(grams, BLOCKS, w_bar, start.w != 0, G.shape[0] * L2)
        assert int((result.w != 0).sum()) <= k
        assert result.objective <= start.objective * (1 + 1e-9)  # never above the backsolve
        support = torch.nonzero(result.w).flatten().tolist()
        assert result.objective == pytest.approx(block_objective(G, w_bar, support), rel=1e-9)
        known: dict = {}
        optimum = min(block_objective(G, w_bar, list(s), known) for s in itertools.combinations(range(14), k))
        reached += result.objective <= optimum * (1 + 1e-9)
    assert reached >= 20, f"reached the optimum on {reached} of 24"


def test_coordinates_outside_the_eligible_set_never_enter():
    G, w_bar = block_problem(3)
    start = block_backsolve(w_bar, 4, BLOCKS, G, L2, dtype=torch.float64).w != 0
    grams = [G[:, b0:b1].T @ G[:, b0:b1] for b0, b1 in BLOCKS]
    eligible = start.clone()  # nothing new may enter: only the start's own weights
    result = block_swap_search(grams, BLOCKS, w_bar, start, G.shape[0] * L2, eligible=eligible)
    assert not (result.w != 0)[~start].any()


def test_the_block_pruner_with_the_search_lowers_its_objective_and_prunes_dead_columns():
    net, x, y = net_with_a_dead_unit()
    plain = ChitaBlockPruner(GradientSource(n_samples=128), l2=1e-3, block_size=64)
    searched = ChitaBlockPruner(GradientSource(n_samples=128), l2=1e-3, block_size=64, search=BlockSwap())
    assert searched.label() == "CHITA (block, swap)" and searched.settings()["search"]["name"] == "swap"
    before = plain.prune(prune_context(net, x, y), 0.8)
    after = searched.prune(prune_context(net, x, y), 0.8)
    assert after.stats["objective"] < before.stats["objective"] and after.stats["iterations"] > 0
    assert int((after.weights != 0).sum()) <= int((before.weights != 0).sum())
    assert not after.weights[dead_mask(net)].any()


def test_with_memory_groups_the_search_moves_weights_only_within_each_group():
    """Grams are held one group at a time: each group keeps the backsolve's share of k, and its
    objective never rises; with one group the search may move weights between all blocks."""
    G, w_bar = block_problem(3)
    k, search = 5, BlockSwap().searcher(w_bar, None)
    start = block_backsolve(w_bar, k, BLOCKS, G, L2, dtype=torch.float64)
    groups = [(0, 9), (9, 14)]
    grouped = block_backsolve_path(w_bar, k, BLOCKS, G, [L2], groups, torch.float64, search=search)[0]
    whole = block_backsolve_path(w_bar, k, BLOCKS, G, [L2], dtype=torch.float64, search=search)[0]
    for start_stop in groups:
        share = slice(*start_stop)
        assert int((grouped.w[share] != 0).sum()) == int((start.w[share] != 0).sum())
    assert whole.objective <= grouped.objective + 1e-9 and grouped.objective <= start.objective + 1e-9
    support = torch.nonzero(grouped.w).flatten().tolist()
    assert grouped.objective == pytest.approx(block_objective(G, w_bar, support), rel=1e-9)
    assert grouped.stopped_by == STOP_CONVERGED and grouped.num_groups == 2
    budgeted = block_backsolve_path(
        w_bar, k, BLOCKS, G, [L2], groups, torch.float64, search=BlockSwap(max_swaps=0).searcher(w_bar, None)
    )[0]
    assert budgeted.stopped_by == STOP_WORK and not budgeted.converged
