"""The swap search against brute force on small problems, and its invariants."""

from __future__ import annotations

import itertools

import pytest
import torch

from chitalab.solver import backsolve, fit_on_support
from chitalab.solver.result import STOP_CONVERGED, STOP_TIME, STOP_WORK
from chitalab.solver.ridge import with_l2
from chitalab.solver.swap import _apply, _best_swap, _close, _round, _Search, swap_path, swap_search
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
    """Several swaps in one round (the candidates' state kept by rank-one updates): each predicted
    change is the change of the exactly refitted objective, and the round's end brings M⁻¹, α, u
    and the values to those of a fresh factorisation (the screening β stays the start's)."""
    pr = make_problem(3, n=n, l2=1e-2, first_order=True, p=40)
    k = 12
    search = _Search(pr)
    x = search.fit(torch.arange(k))
    rd = _round(search, x, pr.p)
    assert rd is not None
    for _ in range(3):
        swap = _best_swap(search, rd)
        assert swap is not None
        before = naive_objective(pr, fit_on_support(pr, x.support))
        _apply(search, x, rd, swap)
        after = naive_objective(pr, fit_on_support(pr, x.support))
        assert after - before == pytest.approx(swap.change, rel=1e-7, abs=1e-10)
        assert x.f == pytest.approx(after, rel=1e-9)
    _close(search, x, rd)
    fresh = search.fit(x.support)
    assert x.f == pytest.approx(fresh.f, rel=1e-9)
    for name in ("alpha", "Minv", "wS", "u", "z"):
        torch.testing.assert_close(getattr(x, name), getattr(fresh, name))


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
    for result, stop in (
        (swap_search(pr, K, max_swaps=0), STOP_WORK),
        (swap_search(pr, K, time_budget_s=0.0), STOP_TIME),
    ):
        assert result.iterations == 0
        assert result.stopped_by == stop and not result.converged
        assert result.objective == pytest.approx(start.objective, rel=1e-9)
    assert swap_search(pr, K).stopped_by == STOP_CONVERGED


def test_the_result_does_not_depend_on_the_clock(monkeypatch):
    """Without a time budget the search never reads the clock's verdict: with a clock that jumps an
    hour at every reading, the result is bit-identical; with a budget it stops, and says so."""
    pr = make_problem(4, n=30, p=60)
    quiet = swap_search(pr, 12, batch=2, swaps_per_round=1)
    assert quiet.iterations > 1
    clock = iter(range(0, 10**9, 3600))
    monkeypatch.setattr("chitalab.solver.swap.time.perf_counter", lambda: float(next(clock)))
    busy = swap_search(pr, 12, batch=2, swaps_per_round=1)
    assert torch.equal(busy.w, quiet.w) and busy.history == quiet.history
    budgeted = swap_search(pr, 12, batch=2, swaps_per_round=1, time_budget_s=60.0)
    assert budgeted.stopped_by == STOP_TIME and budgeted.iterations < quiet.iterations


def test_needs_a_positive_ridge_and_handles_the_extremes():
    with pytest.raises(ValueError, match="positive ridge"):
        swap_search(make_problem(0, l2=0.0), K)
    pr = make_problem(1)
    torch.testing.assert_close(swap_search(pr, pr.p).w, pr.w_bar)
    assert int((swap_search(pr, 0).w != 0).sum()) == 0


def test_the_path_shares_its_start_and_matches_solving_each_l2_alone():
    for first_order in (False, True):  # with the first-order term the start depends on λ
        pr = make_problem(6, n=10, first_order=first_order, p=30)
        k, problems = 8, [with_l2(pr, l2) for l2 in (1e-3, 1e-2, 1e-1)]
        path = swap_path(problems, k)
        assert len(path) == len(problems)
        for result, problem in zip(path, problems):
            alone = swap_search(problem, k)
            assert result.objective == pytest.approx(naive_objective(problem, result.w), rel=1e-9)
            assert torch.equal(result.w != 0, alone.w != 0)
            assert result.objective == pytest.approx(alone.objective, rel=1e-9)
