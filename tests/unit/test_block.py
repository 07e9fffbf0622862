"""The block-diagonal solver: blocks, equivalence with backsolve, groups, half-precision storage."""

from __future__ import annotations

import pytest
import torch

from chitalab.solver import Problem, backsolve, block_backsolve, fit_on_support, layer_blocks, top_k_support


def make_instance(seed: int, n: int, p: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(0.5 * torch.randn(p, generator=gen, dtype=torch.float64))
    G = torch.randn(n, p, generator=gen, dtype=torch.float64) * scale
    w_bar = torch.randn(p, generator=gen, dtype=torch.float64) ** 3
    return G.to(dtype), w_bar.to(dtype)


def test_blocks_follow_layers_and_output_channels():
    shapes = [(10, 10), (37, 27), (32, 32, 3, 3), (8, 1300), (4, 3)]
    blocks = layer_blocks(shapes, 500)
    assert blocks[0] == (0, 100)  # a small layer is one block
    assert blocks[1] == (100, 1099)  # 999 < 2 x 500 weights: one block
    conv = [b - a for a, b in blocks[2:20]]  # 9216 weights in rows of 288: 18 blocks of whole rows
    assert len(conv) == 18 and all(size % 288 == 0 for size in conv) and sum(conv) == 9216
    rows = [b - a for a, b in blocks[20:36]]  # rows of 1300 >= block_size: each cut in 2
    assert rows == [650] * 16
    assert blocks[36:] == [(20715, 20727)]
    assert all(a < b for a, b in blocks) and all(prev[1] == nxt[0] for prev, nxt in zip(blocks, blocks[1:]))
    assert layer_blocks([(2, 5), (4, 5)], 10_000) == [(0, 10), (10, 30)]


@pytest.mark.parametrize("n", [8, 60])
def test_one_block_equals_full_backsolve(n):
    G, w_bar = make_instance(0, n, 40)
    k = 12
    full = backsolve(Problem.from_gradients(G, w_bar, 1e-2), k)
    block = block_backsolve(w_bar, k, [(0, 40)], G, 1e-2, dtype=torch.float64)
    torch.testing.assert_close(block.w, full.w)
    assert block.objective == pytest.approx(full.objective, rel=1e-10)


def test_blocks_solve_the_block_diagonal_ridge_problem_on_the_global_support():
    G, w_bar = make_instance(1, 30, 50)
    blocks = [(0, 10), (10, 35), (35, 50)]
    k, l2 = 20, 1e-2
    result = block_backsolve(w_bar, k, blocks, G, l2, dtype=torch.float64)
    support = top_k_support(w_bar, k)
    assert set(torch.nonzero(result.w).flatten().tolist()) <= set(support.tolist())
    # The same problem with the Hessian made block-diagonal, solved densely on the support.
    H = torch.zeros(50, 50, dtype=torch.float64)
    for a, b in blocks:
        H[a:b, a:b] = G[:, a:b].T @ G[:, a:b]
    H += 30 * l2 * torch.eye(50, dtype=torch.float64)
    expected = torch.zeros(50, dtype=torch.float64)
    expected[support] = torch.linalg.solve(H[support][:, support], (H @ w_bar)[support])
    torch.testing.assert_close(result.w, expected)
    assert result.num_blocks == 3 and result.objective <= result.objective_magnitude


def test_groups_give_the_same_solution_and_fetch_each_group_once():
    G, w_bar = make_instance(2, 16, 60)
    blocks = layer_blocks([(3, 4), (6, 5), (2, 9)], 10)
    groups = [(0, 12), (12, 42), (42, 60)]
    calls = []

    def columns(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return G[:, start:stop].clone()

    grouped = block_backsolve(w_bar, 25, blocks, columns, 1e-3, groups=groups, dtype=torch.float64)
    whole = block_backsolve(w_bar, 25, blocks, G, 1e-3, dtype=torch.float64)
    assert calls == groups and grouped.num_groups == 3
    torch.testing.assert_close(grouped.w, whole.w)
    with pytest.raises(ValueError, match="straddles"):
        block_backsolve(w_bar, 25, blocks, G, 1e-3, groups=[(0, 20), (20, 60)])


def test_empty_blocks_are_zeroed():
    G, w_bar = make_instance(3, 10, 20)
    w_bar[:10] *= 1e-6  # the first block loses every weight
    result = block_backsolve(w_bar, 5, [(0, 10), (10, 20)], G, 1e-2, dtype=torch.float64)
    assert torch.all(result.w[:10] == 0) and int((result.w != 0).sum()) == 5


@pytest.mark.parametrize("storage", [torch.bfloat16, torch.float16])
def test_half_precision_storage_is_solved_in_float32(storage):
    G, w_bar = make_instance(4, 40, 80, dtype=torch.float32)
    blocks = layer_blocks([(8, 10)], 20)
    exact = block_backsolve(w_bar, 30, blocks, G, 1e-2)
    half = block_backsolve(w_bar, 30, blocks, G.to(storage), 1e-2)
    assert half.w.dtype == torch.float32
    assert torch.equal(half.w != 0, exact.w != 0)
    torch.testing.assert_close(half.w, exact.w, rtol=0.05, atol=0.05 * float(exact.w.abs().max()))


def test_block_fit_reuses_the_exact_support_fit():
    G, w_bar = make_instance(5, 12, 30)
    result = block_backsolve(w_bar, 30, [(0, 30)], G, 1e-1, dtype=torch.float64)
    all_kept = fit_on_support(Problem.from_gradients(G, w_bar, 1e-1), torch.arange(30))
    torch.testing.assert_close(result.w, all_kept)
    torch.testing.assert_close(result.w, w_bar)  # nothing pruned: w̄ is optimal (y = G w̄)
