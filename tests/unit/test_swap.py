"""The swap search against brute force on small problems, and its invariants."""

from __future__ import annotations

import itertools

import pytest
import torch

from chitalab.solver import backsolve, fit_on_support
from chitalab.solver.swap import _apply, _best_swap, _entering, _Search, swap_search
from tests.support.brute_force import INSTANCES, K, brute_force, make_problem, naive_objective, reaches

# Measured: 23/24 (no first-order term) and 22/24 (with it) at l2 = 1e-2; asserted with a margin of 2.
MIN_HITS = {False: 21, True: 20}


@pytest.mark.parametrize("first_order", [False, True])
def test_reaches_the_optimum_on_most_instances_and_never_ends_worse_than_backsolve(first_order):
    hits = 0
    for seed, n in INSTANCES:
        pr = make_problem(seed, n, first_order=first_order)
        optimum, _ = brute_force(pr, K)
        result = swap_search(pr, K)
        value = naive_objective(pr, result.w)
        start = naive_objective(pr, backsolve(pr, K).w)
        assert value <= start + 1e-9 * max(1.0, abs(start))
        assert value >= optimum - 1e-9 * max(1.0, abs(optimum))
        assert int((result.w != 0).sum()) <= K
        assert result.objective == pytest.approx(value, rel=1e-9, abs=1e-9)
        history = torch.tensor(result.history)
        assert torch.all(history[1:] < history[:-1]), "every accepted swap lowers f"
        assert result.history[0] == pytest.approx(start, rel=1e-9, abs=1e-9)
        hits += reaches(value, optimum)
    assert hits >= MIN_HITS[first_order], f"swap search reached the optimum on {hits}/{len(INSTANCES)} instances"


@pytest.mark.parametrize("n", [8, 60])  # Woodbury side both larger and smaller than k
def test_predicted_swap_changes_equal_the_exact_refit(n):
    """Several swaps from one screening (the candidates' state kept by rank-one updates): each
    predicted change is the change of the exactly refitted objective."""
    pr = make_problem(3, n=n, l2=1e-2, first_order=True, p=40)
    k = 12
    search = _Search(pr)
    x = search.fit(torch.arange(k))
    in_support = torch.zeros(pr.p, dtype=torch.bool)
    in_support[x.support] = True
    entering = _entering(search, x, in_support, pr.p)
    for _ in range(3):
        swap = _best_swap(search, x, entering, k)
        assert swap is not None
        before = naive_objective(pr, fit_on_support(pr, x.support))
        x, _, _ = _apply(search, x, entering, swap)
        after = naive_objective(pr, fit_on_support(pr, x.support))
        assert after - before == pytest.approx(swap.change, rel=1e-7, abs=1e-10)
        assert x.f == pytest.approx(after, rel=1e-9)
        fresh = search.fit(x.support)
        torch.testing.assert_close(x.alpha, fresh.alpha)
        torch.testing.assert_close(x.Minv, fresh.Minv)


def test_result_is_a_local_optimum_for_single_swaps():
    """With batches that cover every pair, no exchange of one kept and one pruned weight helps."""
    pr = make_problem(5, n=15, l2=1e-2, p=24)
    k = 6
    result = swap_search(pr, k, batch=pr.p, max_batch=pr.p)
    assert result.converged
    kept = torch.nonzero(result.w).flatten().tolist()
    best = naive_objective(pr, result.w)
    for i, j in itertools.product(kept, sorted(set(range(pr.p)) - set(kept))):
        support = torch.tensor(sorted(set(kept) - {i} | {j}))
        assert naive_objective(pr, fit_on_support(pr, support)) >= best - 1e-9 * max(1.0, abs(best))


def test_float32_agrees_with_float64():
    for seed in range(4):
        f64 = swap_search(make_problem(seed, dtype=torch.float64, first_order=True), K)
        f32 = swap_search(make_problem(seed, dtype=torch.float32, first_order=True), K)
        assert f32.w.dtype == torch.float32
        assert f32.objective == pytest.approx(f64.objective, rel=1e-4)
        torch.testing.assert_close(f32.w.double(), f64.w, rtol=1e-3, atol=1e-4)


def test_starts_from_any_sparse_point_and_does_not_end_above_it():
    pr = make_problem(2, n=10, p=30)
    k = 8
    gen = torch.Generator().manual_seed(0)
    for count in (k, k - 3, k + 5):  # exactly k, fewer (padded), more (thresholded) nonzeros
        w0 = torch.zeros(pr.p, dtype=torch.float64)
        index = torch.randperm(pr.p, generator=gen)[:count]
        w0[index] = torch.randn(count, generator=gen, dtype=torch.float64)
        result = swap_search(pr, k, w0=w0)
        assert int((result.w != 0).sum()) <= k
        if count <= k:
            assert naive_objective(pr, result.w) <= naive_objective(pr, w0)


def test_budgets_stop_the_search_at_the_start():
    pr = make_problem(0, first_order=True)
    start = backsolve(pr, K)
    for result in (swap_search(pr, K, max_swaps=0), swap_search(pr, K, time_budget_s=0.0)):
        assert result.iterations == 0
        assert result.objective == pytest.approx(start.objective, rel=1e-9)


def test_needs_a_positive_ridge_and_handles_the_extremes():
    with pytest.raises(ValueError, match="positive ridge"):
        swap_search(make_problem(0, l2=0.0), K)
    pr = make_problem(1)
    torch.testing.assert_close(swap_search(pr, pr.p).w, pr.w_bar)
    assert int((swap_search(pr, 0).w != 0).sum()) == 0


def test_path_over_l2_warm_starts_and_matches_solving_each_l2():
    from chitalab.solver.ridge import with_l2
    from chitalab.solver.swap import swap_path

    pr = make_problem(6, n=10, first_order=True, p=30)
    k, l2s = 8, [1e-3, 1e-2, 1e-1]
    path = swap_path(pr, k, l2s)
    assert len(path) == len(l2s)
    for result, l2 in zip(path, l2s):
        alone = swap_search(with_l2(pr, l2), k)
        exact = naive_objective(with_l2(pr, l2), result.w)
        assert result.objective == pytest.approx(exact, rel=1e-9)
        assert int((result.w != 0).sum()) <= k
        # a warm start is another local optimum, not necessarily the same one: within 1 %
        reference = naive_objective(with_l2(pr, l2), alone.w)
        assert exact <= reference + 0.01 * abs(reference) + 1e-9
