"""N:M sparsity against brute force: the groups, the exact projection (also with a budget), the
closed-form support-changing step, backsolve on the N:M support, and every solver and pruner
ending feasible."""

from __future__ import annotations

import itertools

import pytest
import torch

from chitalab.errors import ArgumentError
from chitalab.fisher import GradientSource
from chitalab.models import MLPNet
from chitalab.params import keep_count, sparsity_keeping
from chitalab.pruning import ChitaPruner, MultiStagePruner
from chitalab.solver import (
    IHT,
    NM,
    ActiveSet,
    Backsolve,
    SparsityConstraint,
    block_backsolve,
    layer_blocks,
    nm_groups,
    woodfisher,
)
from tests.support import EVERY_SOLVER, every_pruner, prune_context
from tests.support.brute_force import make_problem, naive_objective, reaches
from tests.support.patterns import best_mask_energy, is_n_m, nm_group_counts

# a linear row of 6 inputs (groups of 4 and 2 at m=4) and a conv of 3 input channels at 2
# kernel positions (flat index = channel * 2 + position): the groups written out by hand
TINY = [(1, 6), (1, 3, 1, 2)]
TINY_GROUPS = [[0, 1, 2, 3], [4, 5], [6, 8, 10], [7, 9, 11]]


def test_groups_are_runs_of_m_input_channels_at_each_output_and_kernel_position():
    ids = nm_groups(TINY, 4)
    found = sorted(sorted(torch.nonzero(ids == g).flatten().tolist()) for g in ids.unique())
    assert found == sorted(TINY_GROUPS)


def test_groups_agree_with_the_padded_layout_on_real_shapes():
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 6, 3, 3), (5, 13), (4, 3, 1, 1), (7, 20)]
    for m in (2, 4, 8):
        constraint = NM(shapes, n=1, m=m)
        w = torch.randn(constraint.numel, generator=gen) * (torch.rand(constraint.numel, generator=gen) < 0.4)
        ours = torch.bincount(constraint.group[w != 0], minlength=constraint.group_sizes.numel())
        offset, reference = 0, []
        for shape in shapes:
            size = torch.Size(shape).numel()
            reference.append(nm_group_counts(w[offset : offset + size].view(shape), m))
            offset += size
        assert sorted(ours.tolist()) == sorted(torch.cat(reference).tolist())


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (3, 4), (1, 2)])
def test_projection_is_the_best_allowed_support_for_every_budget(n, m):
    constraint = NM(TINY, n=n, m=m)
    groups = [torch.nonzero(constraint.group == g).flatten() for g in constraint.group.unique()]
    floors = [min(n, g.numel()) for g in groups]  # every group's own n slots, while k holds them
    gen = torch.Generator().manual_seed(n * 10 + m)
    for _ in range(3):
        v = torch.randn(constraint.numel, generator=gen, dtype=torch.float64)
        for k in range(1, constraint.numel + 1):
            per_group, floored = constraint.per_group(k), k >= sum(floors)

            def allowed(mask, k=k, per_group=per_group, floored=floored):
                counts = [int(mask[g].sum()) for g in groups]
                if sum(counts) > k or max(counts) > per_group:
                    return False
                return not floored or all(c >= f for c, f in zip(counts, floors))

            mask = constraint.support_mask(v, k)
            assert allowed(mask)
            assert float((v[mask] ** 2).sum()) == pytest.approx(best_mask_energy(v, allowed))
            assert constraint.is_feasible(v.masked_fill(~mask, 0), k)


def test_the_budget_tightens_the_pattern_from_m_down_to_n():
    constraint = NM(TINY, n=1, m=4)
    assert constraint.slots == [0, 4, 8, 11, 12]  # groups of 4, 2, 3, 3: short ones keep all they have
    assert [constraint.per_group(k) for k in (12, 11, 9, 8, 5, 4, 1)] == [4, 3, 3, 2, 2, 1, 1]
    assert constraint.fixed_keep() == 4


def test_a_pattern_fixed_budget_maps_back_to_the_same_count_through_the_sparsity():
    for numel in (7, 100, 32360, 268336, 4209088):
        for k in range(1, numel, max(1, numel // 97)):
            assert keep_count(sparsity_keeping(k, numel), numel) == k


@pytest.mark.parametrize(("n", "m", "bad"), [(5, 4, "n"), (0, 4, "n"), (2, 0, "m"), (2.5, 4, "n")])
def test_bad_n_or_m_is_one_clear_error(n, m, bad):
    with pytest.raises(ArgumentError) as err:
        NM(TINY, n=n, m=m)
    assert err.value.argument == bad and str(err.value).startswith(f"{bad}=")


def test_the_closed_form_change_step_agrees_with_the_generic_search():
    shapes = [(4, 8), (3, 6, 2, 2)]
    constraint = NM(shapes, n=2, m=4)
    gen = torch.Generator().manual_seed(1)
    k = constraint.fixed_keep()
    for _ in range(20):
        w, _ = constraint.project(torch.randn(constraint.numel, generator=gen, dtype=torch.float64), k)
        g = torch.randn(constraint.numel, generator=gen, dtype=torch.float64)
        in_support = constraint.support_mask(w, k)
        exact = constraint.change_step(w, g, in_support, k)
        generic = SparsityConstraint.change_step(constraint, w, g, in_support, k)
        assert exact == pytest.approx(generic, rel=1e-6)


def test_with_a_binding_budget_the_change_step_is_a_lower_bound():
    constraint = NM([(4, 8), (3, 6, 2, 2)], n=2, m=4)
    gen = torch.Generator().manual_seed(4)
    assert [constraint.per_group(k) for k in (30, 80, 90)] == [2, 3, 4]
    for k in (30, 80, 90):  # below the slots of their N' (64, 84, 104): the budget binds
        for _ in range(10):
            w, _ = constraint.project(torch.randn(constraint.numel, generator=gen, dtype=torch.float64), k)
            g = torch.randn(constraint.numel, generator=gen, dtype=torch.float64)
            in_support = constraint.support_mask(w, k)
            found = constraint.change_step(w, g, in_support, k)
            generic = SparsityConstraint.change_step(constraint, w, g, in_support, k)
            assert found <= generic * (1 + 1e-6)
            assert torch.equal(constraint.support_mask(w - found * (1 - 1e-6) * g, k), in_support)


def test_a_loose_budget_never_empties_a_group_below_n():
    """A group whose weights are all small still keeps its own n slots at every budget, so a
    stage that prunes for good never leaves the last stage fewer than n weights there."""
    constraint = NM([(1, 8)], n=2, m=4)
    v = torch.tensor([9.0, 8.0, 7.0, 6.0, 0.1, 0.2, 0.3, 0.4])
    assert [constraint.per_group(k) for k in (4, 6, 7)] == [2, 3, 4]
    assert constraint.support_mask(v, 7).tolist() == [True, True, True, True, False, True, True, True]
    assert constraint.support_mask(v, 6).tolist() == [True, True, True, False, False, True, True, True]
    assert constraint.support_mask(v, 4).tolist() == [True, True, False, False, False, False, True, True]
    wide = NM([(1, 12)], n=2, m=4)  # three groups: 6 slots at 2:4, 9 at 3:4
    w = torch.tensor([9.0, 8.0, 7.0, 0, 6.0, 5.0, 4.0, 0, 0, 0, 0, 0])
    assert wide.per_group(7) == 3 and not wide.is_feasible(w, 7)  # 3 + 3 + the empty group's 2 slots
    assert wide.is_feasible(w, 8)


def test_projections_in_a_restricted_view_are_feasible_in_the_full_one():
    """Active sets, dead columns and frozen weights solve on a subset: the left-out weights are
    zeros, and what the view keeps must still be allowed on the whole tensors."""
    shapes = [(4, 8), (3, 6, 2, 2)]
    constraint = NM(shapes, n=2, m=4)
    gen = torch.Generator().manual_seed(5)
    for _ in range(30):
        index = torch.nonzero(torch.rand(constraint.numel, generator=gen) < 0.6).flatten()
        view = constraint.restrict(index)
        v = torch.randn(index.numel(), generator=gen, dtype=torch.float64)
        for k in (40, 64, 70, 84, 90):
            w = torch.zeros(constraint.numel, dtype=torch.float64).index_copy_(0, index, view.project(v, k)[0])
            assert constraint.is_feasible(w, k) and view.is_feasible(v.masked_fill(~view.support_mask(v, k), 0), k)


def nm_brute_force(problem, constraint: NM, k: int) -> float:
    """Best objective over every support that keeps exactly min(n, size) weights per group."""
    groups = [torch.nonzero(constraint.group == g).flatten().tolist() for g in constraint.group.unique()]
    choices = [itertools.combinations(g, min(constraint.n, len(g))) for g in groups]
    G, w_bar = problem.G.double(), problem.w_bar.double()
    H = G.T @ G + problem.ridge * torch.eye(problem.p, dtype=torch.float64)
    best = float("inf")
    for picks in itertools.product(*choices):
        S = torch.tensor(sorted(i for pick in picks for i in pick))
        w = torch.zeros(problem.p, dtype=torch.float64)
        w[S] = torch.linalg.solve(H[S][:, S], (H @ w_bar)[S])
        best = min(best, naive_objective(problem, w))
    return best


def test_backsolve_is_the_exact_ridge_fit_on_the_n_m_support():
    constraint = NM(TINY, n=2, m=4)
    k = constraint.fixed_keep()
    for seed in range(6):
        problem = make_problem(seed, n=10 if seed % 2 else 40, p=constraint.numel)
        result = Backsolve().solve(problem, k, constraint)
        support = torch.nonzero(result.w).flatten()
        assert constraint.is_feasible(result.w, k) and is_n_m(result.w[:6].view(1, 6), 2, 4)
        G, w_bar = problem.G.double(), problem.w_bar.double()
        H = G.T @ G + problem.ridge * torch.eye(problem.p, dtype=torch.float64)
        exact = torch.linalg.solve(H[support][:, support], (H @ w_bar)[support])
        assert torch.allclose(result.w[support], exact, rtol=1e-6, atol=1e-9)
        assert result.objective >= nm_brute_force(problem, constraint, k) - 1e-9


@pytest.mark.parametrize("name", sorted(EVERY_SOLVER))
def test_every_solver_ends_on_an_n_m_support_no_better_than_the_enumerated_optimum(name):
    constraint = NM(TINY, n=2, m=4)
    k = constraint.fixed_keep()
    reached = 0
    for seed in range(8):
        problem = make_problem(seed, n=40, p=constraint.numel)
        result = EVERY_SOLVER[name].solve(problem, k, constraint)
        optimum = nm_brute_force(problem, constraint, k)
        assert constraint.is_feasible(result.w, k)
        assert result.objective >= optimum - 1e-8 * max(1.0, abs(optimum))
        if name != "projected_gradient":
            assert result.objective <= Backsolve().solve(problem, k, constraint).objective * (1 + 1e-9)
        reached += reaches(result.objective, optimum)
    if name == "iht_refit":  # supports scored by their exact refit: the optimum on most instances
        assert reached >= 5


def test_block_backsolve_and_woodfisher_keep_the_pattern():
    shapes = [(6, 8), (4, 6), (3, 4)]
    constraint = NM(shapes, n=2, m=4)
    k = constraint.fixed_keep()
    gen = torch.Generator().manual_seed(2)
    p = constraint.numel
    G, w_bar = (
        torch.randn(30, p, generator=gen, dtype=torch.float64),
        torch.randn(p, generator=gen, dtype=torch.float64),
    )
    blocks = layer_blocks(shapes, 10)
    for w in (
        block_backsolve(w_bar, k, blocks, G, 1e-3, constraint=constraint).w,
        woodfisher(w_bar, k, blocks, G, 1e-3, "independent", constraint=constraint).w,
    ):
        assert constraint.is_feasible(w, k) and int((w != 0).sum()) == k


def test_every_pruner_keeps_n_m_with_short_groups_frozen_weights_and_stages():
    torch.manual_seed(0)
    model = MLPNet(62, [16, 10], 4)  # 62 and 10 inputs: short last groups at m=4
    x, y = torch.randn(80, 62), torch.randint(0, 4, (80,))
    gradients = GradientSource(n_samples=64)
    ctx = prune_context(model, x, y)
    constraint = NM(ctx.pruned.shapes, n=2, m=4)
    sparsity = sparsity_keeping(constraint.fixed_keep(), ctx.pruned.numel)
    pruners = every_pruner([ActiveSet(iterations=10), IHT(iterations=10), Backsolve()], base_level=0.1)
    for pruner in pruners:
        net = MLPNet(62, [16, 10], 4)
        net.load_state_dict(model.state_dict())
        ctx = prune_context(net, x, y, constraint=constraint)
        result = pruner.prune(ctx, sparsity)
        assert constraint.is_feasible(result.weights, constraint.fixed_keep()), pruner.label()
        ctx.pruned.assign(result.weights)
        assert all(is_n_m(p, 2, 4) for p in ctx.pruned.params), pruner.label()
    frozen = torch.zeros(ctx.pruned.numel, dtype=torch.bool)
    frozen[::3] = True
    ctx = prune_context(model, x, y, constraint=constraint, frozen=frozen)
    result = ChitaPruner(gradients, ActiveSet(iterations=10)).prune(ctx, sparsity)
    assert constraint.is_feasible(result.weights, constraint.fixed_keep())
    assert not result.weights[frozen].any()


def test_chitapp_stages_tighten_the_pattern_with_the_budget():
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4)
    x, y = torch.randn(80, 64), torch.randint(0, 4, (80,))
    ctx = prune_context(model, x, y)
    constraint = NM(ctx.pruned.shapes, n=2, m=8)
    ctx = prune_context(model, x, y, constraint=constraint)
    sparsity = sparsity_keeping(constraint.fixed_keep(), ctx.pruned.numel)
    pruner = MultiStagePruner(ChitaPruner(GradientSource(n_samples=64), IHT(iterations=5)), 4, "linear", 0.25)
    result = pruner.prune(ctx, sparsity)
    per_group = [constraint.per_group(keep_count(s["sparsity"], ctx.pruned.numel)) for s in result.stages]
    # densities 0.75, 0.58, 0.42, 0.25: N' = ceil(8 · density), i.e. 6:8 -> 5:8 -> 4:8 -> 2:8
    assert per_group == [6, 5, 4, 2]
    assert all(s["measured_sparsity"] >= s["sparsity"] - 1e-12 for s in result.stages)
    assert is_n_m(model.fc1.weight, 2, 8) and constraint.is_feasible(result.weights, constraint.fixed_keep())
