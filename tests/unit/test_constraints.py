"""Every solver and pruner honours a sparsity constraint defined outside src/ (per-tensor
top-k, tests/extensions.py), and the generic support-changing step agrees with the closed form."""

from __future__ import annotations

import pytest
import torch

from chitalab.fisher import GradientSource
from chitalab.models import MLPNet
from chitalab.pruning import ChitaPruner
from chitalab.solver import (
    GLOBAL_TOP_K,
    ActiveSet,
    Backsolve,
    GlobalTopK,
    Problem,
    SparsityConstraint,
    block_backsolve,
    layer_blocks,
    woodfisher,
)
from tests.extensions import PerTensorTopK, ProjectedGradient
from tests.support import EVERY_SOLVER, every_pruner, prune_context

SHAPES = [(6, 5), (4, 6), (3, 4)]  # 30 + 24 + 12 = 66 weights in three "tensors"


def per_tensor_counts(w: torch.Tensor, constraint: PerTensorTopK) -> list[int]:
    return [int((w[constraint.owner == t] != 0).sum()) for t in range(len(constraint.sizes))]


def problem(seed: int = 0, n: int = 40, first_order: bool = False) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    p = sum(a * b for a, b in SHAPES)
    G = torch.randn(n, p, generator=gen, dtype=torch.float64)
    w_bar = torch.randn(p, generator=gen, dtype=torch.float64) * torch.linspace(0.2, 2.0, p, dtype=torch.float64)
    a = torch.randn(p, generator=gen, dtype=torch.float64) if first_order else None
    return Problem.from_gradients(G, w_bar, 1e-3, a)


@pytest.mark.parametrize("name", sorted(EVERY_SOLVER))
@pytest.mark.parametrize("first_order", [False, True])
def test_every_solver_honours_a_constraint_defined_in_the_tests(name, first_order):
    constraint = PerTensorTopK(SHAPES)
    k = 20
    for seed in range(3):
        pr = problem(seed, first_order=first_order)
        result = EVERY_SOLVER[name].solve(pr, k, constraint)
        assert constraint.is_feasible(result.w, k)
        assert all(c <= b for c, b in zip(per_tensor_counts(result.w, constraint), constraint.budgets(k)))
        start = Backsolve().solve(pr, k, constraint)
        if name != "projected_gradient":  # the others start from the backsolve point
            assert result.objective <= start.objective * (1 + 1e-9)


def test_block_methods_and_woodfisher_honour_the_constraint():
    constraint = PerTensorTopK(SHAPES)
    pr, k = problem(1), 24
    blocks = layer_blocks(SHAPES, 10)
    for w in (
        block_backsolve(pr.w_bar, k, blocks, pr.G, 1e-3, constraint=constraint).w,
        woodfisher(pr.w_bar, k, blocks, pr.G, 1e-3, "independent", constraint=constraint).w,
    ):
        assert constraint.is_feasible(w, k)
        assert per_tensor_counts(w, constraint) == constraint.budgets(k)


def test_every_pruner_honours_the_constraint_also_with_frozen_weights_and_in_stages():
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4)
    x, y = torch.randn(80, 64), torch.randint(0, 4, (80,))
    shapes = [tuple(p.shape) for p in (model.fc1.weight, model.fc2.weight, model.fc3.weight)]
    constraint = PerTensorTopK(shapes)
    gradients = GradientSource(n_samples=64)
    pruners = every_pruner([ActiveSet(iterations=10), ProjectedGradient(iterations=10)])
    for pruner in pruners:
        net = MLPNet(64, [16, 8], 4)
        net.load_state_dict(model.state_dict())
        ctx = prune_context(net, x, y, constraint=constraint)
        k = int(0.2 * ctx.pruned.numel)
        result = pruner.prune(ctx, 0.8)
        assert constraint.is_feasible(result.weights, k), pruner.label()
    frozen = torch.zeros(ctx.pruned.numel, dtype=torch.bool)
    frozen[::3] = True
    ctx = prune_context(model, x, y, constraint=constraint, frozen=frozen)
    result = ChitaPruner(gradients, ActiveSet(iterations=10)).prune(ctx, 0.8)
    assert constraint.is_feasible(result.weights, int(0.2 * ctx.pruned.numel))
    assert not result.weights[frozen].any()


class GenericTopK(SparsityConstraint):
    """Global top-k with the base class's generic support-changing step."""

    def support_mask(self, v: torch.Tensor, k: int) -> torch.Tensor:
        return GLOBAL_TOP_K.support_mask(v, k)

    def restrict(self, index: torch.Tensor) -> SparsityConstraint:
        return self


def test_the_generic_change_step_finds_the_closed_form_one():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        w = torch.zeros(30, dtype=torch.float64)
        support = torch.randperm(30, generator=gen)[:8]
        w[support] = torch.randn(8, generator=gen, dtype=torch.float64)
        g = torch.randn(30, generator=gen, dtype=torch.float64)
        in_support = w != 0
        exact = GlobalTopK().change_step(w, g, in_support, 8)
        generic = GenericTopK().change_step(w, g, in_support, 8)
        assert generic == pytest.approx(exact, rel=1e-6)
