"""WoodFisher against explicit inversion of the (block-diagonal) empirical Fisher."""

from __future__ import annotations

import pytest
import torch
from test_block import make_instance

from chitalab.solver import BlockInverseFisher, obs_update, woodfisher


def dense_fisher(G: torch.Tensor, l2: float, blocks: list[tuple[int, int]]) -> torch.Tensor:
    """F = GᵀG/n + l2·I with the couplings between blocks removed."""
    n, p = G.shape
    F = torch.zeros(p, p, dtype=G.dtype)
    for a, b in blocks:
        F[a:b, a:b] = G[:, a:b].T @ G[:, a:b] / n
    return F + l2 * torch.eye(p, dtype=G.dtype)


@pytest.mark.parametrize("n,p", [(10, 30), (40, 12)])  # Woodbury (p > n) and the direct p x p factor
def test_block_inverse_matches_explicit_inverse(n, p):
    G, _ = make_instance(0, n, p)
    H = torch.linalg.inv(dense_fisher(G, 1e-2, [(0, p)]))
    inverse = BlockInverseFisher(G, 1e-2)
    assert inverse.woodbury == (p > n)
    torch.testing.assert_close(inverse.diagonal(), H.diagonal())
    v = torch.randn(p, dtype=torch.float64)
    torch.testing.assert_close(inverse.apply(v), H @ v)


@pytest.mark.parametrize("n", [10, 50])
def test_joint_update_is_the_multi_weight_obs_update(n):
    G, w_bar = make_instance(1, n, 25)
    l2 = 1e-2
    keep = torch.zeros(25, dtype=torch.bool)
    keep[torch.randperm(25, generator=torch.Generator().manual_seed(0))[:9]] = True
    H = torch.linalg.inv(dense_fisher(G, l2, [(0, 25)]))
    Q = torch.nonzero(~keep).flatten()
    # OBS for a set Q: δw = −H E_Q (E_Qᵀ H E_Q)⁻¹ E_Qᵀ w̄.
    expected = w_bar - H[:, Q] @ torch.linalg.solve(H[Q][:, Q], w_bar[Q])
    w = obs_update(G, w_bar, keep, l2, "joint")
    torch.testing.assert_close(w, expected)
    assert torch.all(w[Q] == 0)


def test_independent_update_sums_single_weight_updates():
    G, w_bar = make_instance(2, 15, 20)
    l2 = 1e-2
    keep = torch.arange(20) % 3 == 0
    H = torch.linalg.inv(dense_fisher(G, l2, [(0, 20)]))
    expected = w_bar.clone()
    for q in torch.nonzero(~keep).flatten():
        expected -= w_bar[q] / H[q, q] * H[:, q]
    expected[~keep] = 0
    torch.testing.assert_close(obs_update(G, w_bar, keep, l2, "independent"), expected)
    torch.testing.assert_close(obs_update(G, w_bar, keep, l2, "none"), w_bar * keep)


@pytest.mark.parametrize("update", ["joint", "independent", "none"])
def test_global_selection_and_update_match_the_dense_block_diagonal_reference(update):
    G, w_bar = make_instance(3, 12, 40)
    blocks, l2, k = [(0, 8), (8, 30), (30, 40)], 1e-2, 15
    H = torch.linalg.inv(dense_fisher(G, l2, blocks))
    saliency = w_bar.square() / (2 * H.diagonal())
    keep = torch.zeros(40, dtype=torch.bool)
    keep[torch.topk(saliency, k).indices] = True
    result = woodfisher(w_bar, k, blocks, G, l2, update)
    assert torch.equal(result.w != 0, keep)
    for a, b in blocks:
        torch.testing.assert_close(result.w[a:b], obs_update(G[:, a:b], w_bar[a:b], keep[a:b], l2, update))
    if update == "joint":  # the joint update is optimal on its support: never worse than masking
        assert result.objective <= result.objective_magnitude
    assert result.num_blocks == 3


def test_groups_from_a_column_source_give_the_same_result_and_frozen_weights_are_pruned():
    G, w_bar = make_instance(4, 16, 30)
    blocks = [(0, 10), (10, 20), (20, 30)]
    frozen = torch.zeros(30, dtype=torch.bool)
    frozen[torch.topk(w_bar.abs(), 3).indices] = True  # the largest weights: salient, yet frozen
    calls: list[tuple[int, int]] = []

    def columns(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return G[:, start:stop]

    whole = woodfisher(w_bar, 12, blocks, G, 1e-2, frozen=frozen)
    grouped = woodfisher(w_bar, 12, blocks, columns, 1e-2, groups=[(0, 10), (10, 30)], frozen=frozen)
    torch.testing.assert_close(grouped.w, whole.w)
    assert calls == [(0, 10), (10, 30)] * 2  # saliencies, then updates
    assert torch.all(whole.w[frozen] == 0) and int((whole.w != 0).sum()) == 12
    everything = woodfisher(w_bar, 30, blocks, G, 1e-2, frozen=frozen)  # k = p: only the frozen go
    assert torch.equal(everything.w != 0, ~frozen)


def test_float32_gradients_are_computed_in_float64():
    G, w_bar = make_instance(5, 20, 50)
    reference = woodfisher(w_bar, 10, [(0, 50)], G, 1e-4)
    result = woodfisher(w_bar.float(), 10, [(0, 50)], G.float(), 1e-4)
    assert result.w.dtype == torch.float64
    assert torch.equal(result.w != 0, reference.w != 0)
    torch.testing.assert_close(result.w, reference.w, rtol=1e-3, atol=1e-4)


def test_positive_dampening_is_required():
    G, w_bar = make_instance(6, 5, 10)
    with pytest.raises(ValueError, match="positive dampening"):
        woodfisher(w_bar, 3, [(0, 10)], G, 0.0)
