"""The solvers against brute force on small problems, and their invariants."""

from __future__ import annotations

import pytest
import torch

from chitalab.solver import (
    Polish,
    Problem,
    active_set_iht,
    backsolve,
    fit_on_support,
    iht,
    ridge_on_support,
)
from tests.support.brute_force import INSTANCES, K, P, brute_force, make_problem, naive_objective, reaches


@pytest.fixture(scope="module")
def solved():
    """Each instance with its brute-force optimum (computed once for the module)."""
    return [(make_problem(seed, n), *brute_force(make_problem(seed, n), K)) for seed, n in INSTANCES]


def test_backsolve_on_optimal_support_is_the_optimum(solved):
    for pr, optimum, w_opt in solved:
        support = torch.nonzero(w_opt).flatten()
        w = fit_on_support(pr, support)
        assert naive_objective(pr, w) == pytest.approx(optimum, rel=1e-9)
        torch.testing.assert_close(w, w_opt)


@pytest.mark.parametrize("solver", ["iht", "active_set"])
def test_reaches_the_optimum_on_most_instances_and_never_ends_worse_than_mp_backsolve(solved, solver):
    hits = 0
    for pr, optimum, _ in solved:
        mp_backsolve = naive_objective(pr, backsolve(pr, K).w)
        result = iht(pr, K, refit=True) if solver == "iht" else active_set_iht(pr, K, refit=True)
        value = naive_objective(pr, result.w)
        assert value <= mp_backsolve + 1e-9 * max(1.0, mp_backsolve)
        assert value >= optimum - 1e-9 * max(1.0, optimum)  # nothing beats the enumeration
        hits += reaches(value, optimum)
    assert hits > len(solved) / 2, f"{solver} reached the optimum on {hits}/{len(solved)} instances"


@pytest.mark.parametrize("step", ["exact", "lipschitz"])
@pytest.mark.parametrize("init", ["backsolve", "magnitude"])
@pytest.mark.parametrize("first_order", [False, True])
def test_iht_objective_never_increases_and_keeps_at_most_k(step, init, first_order):
    for seed in range(5):
        pr = make_problem(seed, n=10, first_order=first_order)
        result = iht(pr, K, init=init, step=step, max_iter=50)
        history = torch.tensor(result.history)
        assert torch.all(history[1:] <= history[:-1] + 1e-12 * history.abs().max())
        assert int((result.w != 0).sum()) <= K
        assert result.objective == pytest.approx(naive_objective(pr, result.w), rel=1e-9)


def test_active_set_history_is_monotone_and_sparse():
    for seed in range(5):
        pr = make_problem(seed, n=10, first_order=True)
        result = active_set_iht(pr, K, init="magnitude", expand=2.0)
        history = torch.tensor(result.history)
        assert torch.all(history[1:] <= history[:-1] + 1e-12 * history.abs().max())
        assert int((result.w != 0).sum()) <= K


def test_gradient_matches_autograd():
    pr = make_problem(0, n=10, first_order=True)
    w = torch.randn(P, dtype=torch.float64, requires_grad=True)
    r = pr.y - pr.G @ w
    d = w - pr.w_bar
    f = 0.5 * r @ r + 0.5 * pr.ridge * d @ d + pr.a @ d
    f.backward()
    torch.testing.assert_close(pr.gradient(w.detach()), w.grad)


@pytest.mark.parametrize("n", [5, 40])
def test_woodbury_and_direct_solves_agree(n):
    pr = make_problem(3, n=n, first_order=True)
    support = torch.arange(0, P, 2)  # 7 coordinates: fewer and more than n
    torch.testing.assert_close(
        ridge_on_support(pr, support, "woodbury"), ridge_on_support(pr, support, "direct"), rtol=1e-8, atol=1e-10
    )


def test_woodbury_needs_a_positive_ridge():
    pr = make_problem(0, n=5, l2=0.0)
    with pytest.raises(ValueError, match="positive ridge"):
        ridge_on_support(pr, torch.arange(P), "woodbury")


@pytest.mark.parametrize("method", ["iht", "active_set", "backsolve"])
def test_float32_agrees_with_float64(method):
    solve = {"iht": iht, "active_set": active_set_iht, "backsolve": backsolve}[method]
    for seed in range(3):
        f64 = solve(make_problem(seed, dtype=torch.float64), K)
        f32 = solve(make_problem(seed, dtype=torch.float32), K)
        assert f32.w.dtype == torch.float32
        assert f32.objective == pytest.approx(f64.objective, rel=1e-4)
        torch.testing.assert_close(f32.w.double(), f64.w, rtol=1e-3, atol=1e-4)


def test_polish_cd_approaches_backsolve_and_never_raises_the_objective():
    pr = make_problem(1, n=10)
    start = iht(pr, K, init="magnitude", max_iter=2)
    polished = Polish("cd", sweeps=200)(pr, start.w)
    exact = Polish("backsolve")(pr, start.w)
    assert pr.objective(polished) <= start.objective
    assert pr.objective(polished) == pytest.approx(pr.objective(exact), rel=1e-6)
    assert set(torch.nonzero(polished).flatten().tolist()) <= set(torch.nonzero(start.w).flatten().tolist())


def test_all_kept_returns_dense_weights():
    pr = make_problem(0)
    result = iht(pr, P)
    torch.testing.assert_close(result.w, pr.w_bar)


@pytest.mark.parametrize("method", ["iht", "active_set", "backsolve"])
def test_column_major_gradients_give_the_same_solution(method):
    """collect_gradients stores G column-major; the solvers' gathers take another path for it."""
    solve = {"iht": iht, "active_set": active_set_iht, "backsolve": backsolve}[method]
    for seed in range(3):
        row_major = make_problem(seed)
        column_major = Problem.from_gradients(row_major.G.T.contiguous().T, row_major.w_bar, 1e-2)
        assert column_major.column_major and not row_major.column_major
        a, b = solve(row_major, K), solve(column_major, K)
        torch.testing.assert_close(a.w, b.w)
        assert a.objective == pytest.approx(b.objective, rel=1e-10)
