"""CHITA: prune by solving the L0-constrained Fisher regression (see `chitalab.solver`)."""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor

from ..errors import UserError, check_int, choice_error
from ..fisher import activation_bytes, check_finite_gradients, collect_gradients
from ..memory import FisherPlan, memory_budget, plan_fisher
from ..params import keep_count
from ..solver import (
    INITS,
    POLISH_METHODS,
    BlockSolveResult,
    Problem,
    active_set_iht,
    backsolve,
    block_backsolve,
    block_workspace_bytes,
    hard_threshold,
    iht,
    layer_blocks,
    polish,
)
from ..solver.block import ColumnSource
from .base import PruneContext, Pruner, PruneResult

log = logging.getLogger(__name__)

METHODS = ("active_set", "iht", "backsolve", "block")
FISHER_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
HALF_DTYPES = ("bfloat16", "float16")  # storage only: the block solver computes in float32
MEMORY_KNOBS = (
    "lower pruner.n_samples or pruner.fisher_chunk_size, prune fewer layers (model.prune.include/exclude), "
    "or raise pruner.max_memory_gb"
)
STEP_SEARCH_ROUND = 1_000  # sample rounds for the step search, apart from the Fisher's


@torch.no_grad()
def mean_loss(ctx: PruneContext, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Mean loss of the model on (x, y), in batches."""
    total = sum(
        float(ctx.loss_fn(ctx.model(x[i : i + batch_size]), y[i : i + batch_size], reduction="sum"))
        for i in range(0, len(x), batch_size)
    )
    return total / len(x)


class ChitaPruner(Pruner):
    """Single-stage CHITA.

    n_samples gradients (each the mean over `fisher_mini_bsz` samples) form G; the
    solver `method` (iht, active_set, backsolve, block) then chooses k weights and their new
    values under the ridge `l2`. `first_order_term` adds a = Σ g_i / m to the objective.
    `block` (the block-diagonal approximation, see `chitalab.solver.block`) holds G one group
    of blocks at a time, recomputing gradients per group, so its memory stays within
    `max_memory_gb`; it may also store G in bfloat16/float16.
    """

    name = "chita"

    def __init__(
        self,
        method: str = "active_set",
        n_samples: int = 1000,
        fisher_mini_bsz: int = 1,
        l2: float = 1e-4,
        iterations: int = 100,
        first_order_term: bool = False,
        init: str = "backsolve",
        refit: bool = False,
        polish: str = "none",
        cd_sweeps: int = 1,
        tol: float = 1e-7,
        active_set_expand: float = 1.5,
        fisher_dtype: str = "float32",
        fisher_chunk_size: int = 64,
        max_memory_gb: float | None = None,
        block_size: int = 500,
        step_sizes: list[float] | None = None,
        step_samples: int = 2000,
    ):
        if method not in METHODS:
            raise choice_error("pruner.method", method, METHODS)
        if init not in INITS:
            raise choice_error("pruner.init", init, INITS)
        if polish not in POLISH_METHODS:
            raise choice_error("pruner.polish", polish, POLISH_METHODS)
        if fisher_dtype not in FISHER_DTYPES:
            raise choice_error("pruner.fisher_dtype", fisher_dtype, tuple(FISHER_DTYPES))
        for key, value, low in (
            ("n_samples", n_samples, 1),
            ("fisher_mini_bsz", fisher_mini_bsz, 1),
            ("iterations", iterations, 0),
            ("cd_sweeps", cd_sweeps, 1),
            ("fisher_chunk_size", fisher_chunk_size, 1),
            ("block_size", block_size, 1),
        ):
            check_int(f"pruner.{key}", value, low)
        if not l2 >= 0:
            raise UserError(f"pruner.l2={l2!r} is not allowed; it must be >= 0")
        if step_sizes is not None and (len(step_sizes) == 0 or any(not t > 0 for t in step_sizes)):
            raise UserError(f"pruner.step_sizes={step_sizes!r} is not allowed; give positive numbers or null")
        check_int("pruner.step_samples", step_samples, 1)
        if not active_set_expand >= 1:
            raise UserError(f"pruner.active_set_expand={active_set_expand!r} is not allowed; it must be >= 1")
        if max_memory_gb is not None and not max_memory_gb > 0:
            raise UserError(f"pruner.max_memory_gb={max_memory_gb!r} is not allowed; it must be > 0 or null")
        if method != "block" and fisher_dtype in HALF_DTYPES:
            raise UserError(
                f"pruner.fisher_dtype={fisher_dtype} needs pruner.method=block (the other solvers compute in the "
                "storage dtype); use float32 or float64"
            )
        if method == "block" and first_order_term:
            raise UserError("pruner.first_order_term=true is not available with pruner.method=block")
        if method == "block" and polish != "none":
            raise UserError(
                f"pruner.polish={polish} is not available with pruner.method=block (blocks are solved exactly)"
            )
        self.method = method
        self.n_samples = n_samples
        self.fisher_mini_bsz = fisher_mini_bsz
        self.l2 = float(l2)
        self.iterations = iterations
        self.first_order_term = first_order_term
        self.init = init
        self.refit = refit
        self.polish = polish
        self.cd_sweeps = cd_sweeps
        self.tol = tol
        self.active_set_expand = active_set_expand
        self.fisher_dtype = fisher_dtype
        self.fisher_chunk_size = fisher_chunk_size
        self.max_memory_gb = max_memory_gb
        self.block_size = block_size
        self.step_sizes = None if step_sizes is None else [float(t) for t in step_sizes]
        self.step_samples = step_samples

    def samples_needed(self) -> int:
        return max(self.n_samples * self.fisher_mini_bsz, self.step_samples if self.step_sizes else 0)

    def _damped_step(self, ctx: PruneContext, w_bar: Tensor, w: Tensor) -> tuple[Tensor, dict]:
        """Scale the solver's move on its support by the step t in `step_sizes` that gives
        the lowest loss on fresh training samples (never test data): w_t = P(w̄) + t·(w − P(w̄)),
        P keeping w's support. t = 1 is the solver's solution."""
        kept = w_bar * (w != 0)
        x, y = ctx.draw_samples(self.step_samples, ctx.round + STEP_SEARCH_ROUND)
        x, y = x.to(w.device), y.to(w.device)
        losses = {}
        for t in self.step_sizes:
            ctx.pruned.assign(kept + t * (w - kept))
            losses[t] = mean_loss(ctx, x, y, self.fisher_chunk_size * 8)
        ctx.pruned.assign(w_bar)  # single-stage pruners leave the model as they found it
        best = min(losses, key=losses.get)
        return kept + best * (w - kept), {"step_size": best, "step_losses": losses}

    def settings(self) -> dict:
        return {"name": self.name, **vars(self)}

    def _solve(self, problem: Problem, k: int):
        if self.method == "backsolve":
            return backsolve(problem, k)
        options = dict(init=self.init, max_iter=self.iterations, tol=self.tol, refit=self.refit)
        if self.method == "iht":
            return iht(problem, k, **options)
        return active_set_iht(problem, k, expand=self.active_set_expand, **options)

    def _plan(self, ctx: PruneContext, x: torch.Tensor, y: torch.Tensor, cuts: list[int], workspace: int) -> FisherPlan:
        """The memory plan for G; `cuts` are where column groups may end ([p]: G held whole)."""
        m = self.fisher_mini_bsz
        hint = "; use pruner.method=block" if self.method != "block" else "; lower pruner.block_size"
        plan = plan_fisher(
            n=self.n_samples,
            sizes=ctx.pruned.sizes,
            cuts=cuts,
            dtype=FISHER_DTYPES[self.fisher_dtype],
            chunk_size=self.fisher_chunk_size,
            activation_bytes=activation_bytes(ctx.model, ctx.loss_fn, x[:m], y[:m]),
            budget=memory_budget(self.max_memory_gb, ctx.pruned.params[0].device),
            workspace=workspace,
            hint=f"{hint}, {MEMORY_KNOBS}",
        )
        log.info(plan.describe())
        return plan

    def _gradients(
        self,
        ctx: PruneContext,
        x: torch.Tensor,
        y: torch.Tensor,
        plan: FisherPlan,
        columns: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """G, or its columns [start, stop), in chunks as the plan says; refused when not finite."""
        G = collect_gradients(
            ctx.model,
            ctx.pruned,
            ctx.loss_fn,
            x,
            y,
            mini_bsz=self.fisher_mini_bsz,
            chunk_size=plan.chunk_size,
            dtype=FISHER_DTYPES[self.fisher_dtype],
            progress=ctx.progress,
            columns=columns,
        )
        check_finite_gradients(G)
        return G

    def prune(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        if self.method == "block":
            return self._prune_blocks(ctx, sparsity)
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())
        dtype = FISHER_DTYPES[self.fisher_dtype]

        start = time.perf_counter()
        x, y = ctx.draw_samples(self.n_samples * self.fisher_mini_bsz, ctx.round)
        plan = self._plan(ctx, x, y, cuts=[w_bar.numel()], workspace=0)
        G = self._gradients(ctx, x, y, plan)
        fisher_seconds = time.perf_counter() - start

        start = time.perf_counter()
        first_order = G.sum(dim=0) / self.fisher_mini_bsz if self.first_order_term else None
        full = Problem.from_gradients(G, w_bar.to(dtype), self.l2, first_order)
        # Frozen weights stay zero: solve over the others only.
        alive = None if ctx.frozen is None else torch.nonzero(~ctx.frozen.to(w_bar.device)).flatten()
        problem = full if alive is None else full.restrict(alive)
        result = self._solve(problem, min(k, problem.p))
        w = polish(problem, result.w, self.polish, self.cd_sweeps)
        stats = result.stats()
        if alive is not None:
            w = torch.zeros_like(full.w_bar).index_copy_(0, alive, w)
            # The restricted objective differs from the full one by a constant.
            offset = full.objective(torch.zeros_like(w).index_copy_(0, alive, result.w)) - result.objective
            stats["objective_history"] = [h + offset for h in result.history]
        if self.step_sizes:
            w, search = self._damped_step(ctx, w_bar, w.to(w_bar.dtype))
            w = w.to(dtype)
            stats.update(search)
        objective = full.objective(w)
        solver_seconds = time.perf_counter() - start

        stats.update(
            objective=objective,
            objective_magnitude=full.objective(hard_threshold(full.w_bar, k)[0]),
            k=k,
            memory_plan=plan.summary(),
        )
        log.info(
            "CHITA %s: objective %.6g (magnitude pruning: %.6g), %d iterations, %.2fs",
            self.method,
            objective,
            stats["objective_magnitude"],
            result.iterations,
            solver_seconds,
        )
        return PruneResult(
            weights=w.to(w_bar.dtype), fisher_seconds=fisher_seconds, solver_seconds=solver_seconds, stats=stats
        )

    _block_label = "CHITA block"

    def _block_compute_dtype(self) -> torch.dtype:
        return torch.float64 if self.fisher_dtype == "float64" else torch.float32

    def _block_solve(
        self,
        w_bar: Tensor,
        k: int,
        blocks: list[tuple[int, int]],
        columns: ColumnSource,
        groups: list[tuple[int, int]],
        dtype: torch.dtype,
        frozen: Tensor | None,
    ) -> BlockSolveResult:
        """The block-diagonal solve; frozen weights are zero in w̄, so the magnitude support skips
        them while k does not exceed the surviving weights."""
        return block_backsolve(w_bar, k, blocks, columns, self.l2, groups=groups, dtype=dtype)

    def _prune_blocks(self, ctx: PruneContext, sparsity: float) -> PruneResult:
        """Block-diagonal backsolve, gradients computed per group of blocks as the plan says."""
        w_bar = ctx.pruned.flatten()
        k = keep_count(sparsity, w_bar.numel())
        blocks = layer_blocks(ctx.pruned.shapes, self.block_size)
        start = time.perf_counter()
        x, y = ctx.draw_samples(self.n_samples * self.fisher_mini_bsz, ctx.round)
        compute = self._block_compute_dtype()
        workspace = block_workspace_bytes(self.n_samples, blocks, compute)
        plan = self._plan(ctx, x, y, cuts=[stop for _, stop in blocks], workspace=workspace)
        fisher_seconds = time.perf_counter() - start

        def columns(begin: int, stop: int) -> torch.Tensor:
            nonlocal fisher_seconds
            tic = time.perf_counter()
            G = self._gradients(ctx, x, y, plan, columns=(begin, stop))
            fisher_seconds += time.perf_counter() - tic
            return G

        start, setup_seconds = time.perf_counter(), fisher_seconds
        result = self._block_solve(w_bar, k, blocks, columns, plan.groups, compute, ctx.frozen)
        solver_seconds = time.perf_counter() - start - (fisher_seconds - setup_seconds)
        stats = {**result.stats(), "k": k, "memory_plan": plan.summary()}
        log.info(
            "%s: objective %.6g (magnitude pruning: %.6g), %d blocks in %d group(s), %.2fs solving",
            self._block_label,
            result.objective,
            result.objective_magnitude,
            result.num_blocks,
            result.num_groups,
            solver_seconds,
        )
        return PruneResult(
            weights=result.w.to(w_bar.dtype), fisher_seconds=fisher_seconds, solver_seconds=solver_seconds, stats=stats
        )
