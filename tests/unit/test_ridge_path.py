"""Ridge fits for a grid of λ from one eigendecomposition agree with one solve per λ."""

from __future__ import annotations

import pytest
import torch

from chitalab.solver import ridge_on_support
from chitalab.solver.ridge import fit_path, ridge_path, with_l2
from tests.support.brute_force import make_problem

L2S = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


@pytest.mark.parametrize("n", [5, 40])  # n < |S| (n x n side) and n > |S| (|S| x |S| side)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("method", ["cholesky", "eigh"])
def test_path_matches_one_solve_per_l2(n, first_order, method):
    pr = make_problem(4, n=n, first_order=first_order)
    support = torch.tensor([0, 2, 3, 7, 8, 11, 13])
    path = ridge_path(pr, support, L2S, method)
    assert path.shape == (len(L2S), support.numel())
    for row, l2 in zip(path, L2S):
        torch.testing.assert_close(row, ridge_on_support(with_l2(pr, l2), support), rtol=1e-7, atol=1e-9)
    fits = fit_path(pr, support, L2S)
    assert all(int((w != 0).sum()) <= support.numel() for w in fits)


def test_float32_path_is_close_to_float64():
    support = torch.arange(0, 14, 2)
    p64 = ridge_path(make_problem(1, n=5, first_order=True), support, L2S)
    p32 = ridge_path(make_problem(1, n=5, first_order=True, dtype=torch.float32), support, L2S)
    assert p32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p64, rtol=1e-3, atol=1e-4)


def test_singular_grids_are_refused():
    pr = make_problem(0, n=5)
    with pytest.raises(ValueError, match="l2 > 0"):
        ridge_path(pr, torch.arange(10), [0.0, 1e-2])
    with pytest.raises(ValueError):
        with_l2(pr, -1.0)
    with pytest.raises(ValueError, match="method"):
        ridge_path(pr, torch.arange(3), [1e-2], "qr")
