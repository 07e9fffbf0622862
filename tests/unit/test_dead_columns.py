"""Dead gradient columns: found from column norms, never selected while live ones remain."""

from __future__ import annotations

import pytest
import torch

from chitalab.solver import Problem, active_set_iht, backsolve, iht
from chitalab.solver.dead import dead_columns, solve_live
from chitalab.solver.swap import swap_search
from tests.support.brute_force import brute_force, naive_objective, reaches

P, K, DEAD = 16, 4, (1, 5, 6, 11)

SOLVERS = {
    "backsolve": backsolve,
    "iht": lambda pr, k: iht(pr, k, refit=True),
    "active_set": lambda pr, k: active_set_iht(pr, k, refit=True),
    "swap": swap_search,
}


def with_dead_units(seed: int, n: int = 12, first_order: bool = False, dtype=torch.float64) -> Problem:
    """Columns DEAD are exactly zero (a unit that never fired) and their weights are the largest,
    so any magnitude top-k keeps them; the gradient matrix is stored column-major, as collected."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(n, P, generator=gen, dtype=torch.float64) * torch.exp(0.5 * torch.randn(P, generator=gen))
    w_bar = 0.3 * torch.randn(P, generator=gen, dtype=torch.float64)
    G[:, list(DEAD)] = 0
    w_bar[list(DEAD)] = torch.tensor([3.0, -4.0, 5.0, 2.5], dtype=torch.float64)
    a = G.sum(dim=0) if first_order else None
    return Problem.from_gradients(G.T.contiguous().T.to(dtype), w_bar.to(dtype), 1e-2, a)


def test_dead_columns_from_norms_with_a_relative_tolerance():
    pr = with_dead_units(0)
    assert pr.column_major
    assert torch.nonzero(dead_columns(pr.G)).flatten().tolist() == list(DEAD)
    G = pr.G.clone()
    G[:, 0] *= 1e-9  # nearly dead
    assert not bool(dead_columns(G)[0])
    assert bool(dead_columns(G, rtol=1e-6)[0])
    with pytest.raises(ValueError):
        dead_columns(G, rtol=-1.0)


def test_without_the_rule_magnitude_starts_keep_the_dead_weights():
    """Why the rule exists: the ridge pins dead weights at w̄, and backsolve keeps them all."""
    w = backsolve(with_dead_units(0), K).w
    assert torch.all(w[list(DEAD)] != 0)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("first_order", [False, True])
def test_solvers_never_select_dead_columns_and_report_the_full_objective(solver, first_order):
    hits = 0
    for seed in range(6):
        pr = with_dead_units(seed, first_order=first_order)
        result = solve_live(pr, K, SOLVERS[solver])
        assert torch.all(result.w[list(DEAD)] == 0)
        assert int((result.w != 0).sum()) <= K
        assert result.objective == pytest.approx(naive_objective(pr, result.w), rel=1e-9)
        history = torch.tensor(result.history)
        assert torch.all(history[1:] <= history[:-1] + 1e-12 * history.abs().max())
        live = [j for j in range(P) if j not in DEAD]
        optimum, _ = brute_force(pr, K, eligible=live)
        hits += reaches(naive_objective(pr, result.w), optimum)
    if solver == "swap":  # measured 5/6 with and without the first-order term
        assert hits >= 4


def test_dead_columns_fill_the_support_only_when_too_few_live_ones_exist():
    pr = with_dead_units(1, first_order=True)
    live = P - len(DEAD)
    k = live + 2
    result = solve_live(pr, k, swap_search)
    assert int((result.w != 0).sum()) == k
    assert torch.all(result.w[[j for j in range(P) if j not in DEAD]] != 0)
    # the two dead weights kept are those worth most: |ridge·w̄ − a| is largest for them
    push = (pr.ridge * pr.w_bar - pr.a)[list(DEAD)].abs()
    expected = {DEAD[i] for i in torch.topk(push, 2).indices.tolist()}
    assert {j for j in DEAD if result.w[j] != 0} == expected
    assert result.objective == pytest.approx(naive_objective(pr, result.w), rel=1e-9)


def test_no_dead_columns_is_the_plain_solver():
    from tests.support.brute_force import make_problem

    pr = make_problem(0)
    torch.testing.assert_close(solve_live(pr, K, swap_search).w, swap_search(pr, K).w)


def test_float32_agrees_with_float64():
    f64 = solve_live(with_dead_units(2), K, swap_search)
    f32 = solve_live(with_dead_units(2, dtype=torch.float32), K, swap_search)
    assert f32.objective == pytest.approx(f64.objective, rel=1e-4)
    torch.testing.assert_close(f32.w.double(), f64.w, rtol=1e-3, atol=1e-4)
