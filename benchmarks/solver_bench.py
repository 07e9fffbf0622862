"""The solvers on ResNet20-sized and synthetic problems: seconds, iterations, objectives, the
G·v + Gᵀ·r floor, scaling in p and n, and the memory-bounded block method at 10⁷ weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from chitalab.fisher import collect_gradients
from chitalab.fisher.memory import GIB, plan_fisher
from chitalab.solver import (
    Problem,
    SolveResult,
    active_set_iht,
    backsolve,
    block_backsolve,
    block_workspace_bytes,
    hard_threshold,
    iht,
    layer_blocks,
)
from chitalab.solver.swap import swap_search

from .measure import best_of, fitted_exponent, peak_memory, timed
from .synthetic import synthetic_columns, synthetic_problem, synthetic_weights
from .workloads import load_workload

SOLVERS = ("iht", "active_set", "backsolve", "block")
BLOCK_SIZE = 500
ROW = 288  # synthetic "layers" are made of rows of 288 weights (3x3 kernels over 32 channels)

Log = Callable[[str], None]


def synthetic_shapes(p: int) -> list[tuple[int, ...]]:
    """Layer shapes for a synthetic problem of p weights: rows of ROW weights, and the rest."""
    shapes = [(p // ROW, ROW)] if p >= ROW else []
    return shapes + ([(p % ROW, 1)] if p % ROW else [])


def floor_seconds(problem: Problem, device: torch.device) -> float:
    """One G·v plus one Gᵀ·r: what any IHT iteration has to read (fastest of three)."""
    v, r = problem.w_bar, problem.y
    return best_of(lambda: (problem.G @ v, problem.G.T @ r), device)


def solve(method: str, problem: Problem, k: int, l2: float, shapes, max_iter: int) -> SolveResult:
    """Run solver `method` with the pruner's defaults (except `max_iter`)."""
    if method == "iht":
        return iht(problem, k, max_iter=max_iter)
    if method == "active_set":
        return active_set_iht(problem, k, max_iter=max_iter)
    if method == "backsolve":
        return backsolve(problem, k)
    if method == "block":
        blocks = layer_blocks(shapes, BLOCK_SIZE)
        return block_backsolve(problem.w_bar, k, blocks, problem.G, l2, dtype=problem.G.dtype)
    raise ValueError(f"unknown solver {method!r}")


def _run(method: str, problem: Problem, k: int, l2: float, shapes, max_iter: int, device) -> dict:
    with peak_memory(device) as peak:
        result, seconds = timed(lambda: solve(method, problem, k, l2, shapes, max_iter), device)
    return {
        "solver": method,
        "seconds": seconds,
        "iterations": result.iterations,
        "objective": problem.objective(result.w),  # the full objective, also for the block solution
        "converged": result.converged,
        "added_peak_gib": peak.added_gib,
        "peak_gib": peak.peak_gib,
    }


def bench_resnet20(
    n: int, fractions: Sequence[float], l2: float, max_iter: int, device: torch.device, log: Log
) -> dict:
    """Every solver on ResNet20's gradients (n samples) at each kept fraction, in float32 and
    float64; per-iteration time as a multiple of the float32 floor."""
    work = load_workload("resnet20", n, device)
    log(f"  solvers: collecting {n} ResNet20 gradients ({work.source})")
    G, fisher_seconds = timed(
        lambda: collect_gradients(work.model, work.pruned, work.loss_fn, work.x, work.y, progress=False), device
    )
    w_bar = work.pruned.flatten()
    shapes = work.pruned.shapes
    rows = []
    for dtype in (torch.float32, torch.float64):
        problem = Problem.from_gradients(G.to(dtype), w_bar.to(dtype), l2)
        floor = floor_seconds(problem, device)
        for fraction in fractions:
            k = int(fraction * problem.p)
            for method in SOLVERS:
                log(f"  solvers: {method}, k = {fraction:.0%}, {str(dtype).removeprefix('torch.')}")
                row = _run(method, problem, k, l2, shapes, max_iter, device)
                row.update(dtype=str(dtype).removeprefix("torch."), kept=fraction, k=k, floor_seconds=floor)
                row["per_iteration_over_floor"] = row["seconds"] / max(row["iterations"], 1) / floor
                rows.append(row)
        del problem
    by_key = {(r["solver"], r["kept"], r["dtype"]): r for r in rows}
    for row in rows:
        if row["dtype"] == "float32":
            reference = by_key[(row["solver"], row["kept"], "float64")]["objective"]
            row["objective_float64"] = reference
            row["relative_difference"] = abs(row["objective"] - reference) / max(abs(reference), 1e-30)
    return {"n": n, "p": G.shape[1], "l2": l2, "source": work.source, "fisher_seconds": fisher_seconds, "rows": rows}


def iht_iteration(problem: Problem, k: int, iterations: int, step: str, device: torch.device) -> dict:
    """Seconds per IHT iteration from w̄'s top-k with L given (setup excluded). tol = 0, so a run
    stops early only when no step lowers f, after one more (rejected) pass."""
    L, lipschitz_seconds = timed(problem.lipschitz, device)
    w0 = hard_threshold(problem.w_bar, k)[0]
    result, seconds = timed(
        lambda: iht(problem, k, w0=w0, max_iter=iterations, tol=0.0, step=step, lipschitz=L), device
    )
    passes = result.iterations + (1 if result.converged else 0)
    return {
        "step": step,
        "iterations": result.iterations,
        "seconds": seconds,
        "per_iteration_seconds": seconds / max(passes, 1),
        "lipschitz_seconds": lipschitz_seconds,
    }


def bench_floor(
    sizes: Sequence[tuple[int, int]], fraction: float, iterations: int, l2: float, device, log: Log
) -> list[dict]:
    """At each (n, p): the floor, and an IHT iteration (both step rules) as a multiple of it."""
    rows = []
    for n, p in sizes:
        log(f"  floor: n = {n}, p = {p:,}")
        with peak_memory(device) as peak:
            problem = synthetic_problem(n, p, l2, seed=0, device=device)
            floor = floor_seconds(problem, device)
            for step in ("exact", "lipschitz"):
                row = iht_iteration(problem, int(fraction * p), iterations, step, device)
                row.update(n=n, p=p, floor_seconds=floor, per_iteration_over_floor=row["per_iteration_seconds"] / floor)
                rows.append(row)
            del problem
        for row in rows[-2:]:
            row.update(added_peak_gib=peak.added_gib, peak_gib=peak.peak_gib)
    return rows


def bench_scaling(
    axis: str, sizes: Sequence[int], fixed: int, fraction: float, max_iter: int, l2: float, device, log: Log
) -> dict:
    """Each solver's seconds (and IHT's per iteration) as p or n grows with the other fixed,
    with the least-squares exponent of seconds in that size."""
    rows = []
    for size in sizes:
        n, p = (fixed, size) if axis == "p" else (size, fixed)
        log(f"  scaling in {axis}: n = {n}, p = {p:,}")
        problem = synthetic_problem(n, p, l2, seed=0, device=device)
        floor = floor_seconds(problem, device)
        k = int(fraction * p)
        for method in SOLVERS:
            row = _run(method, problem, k, l2, synthetic_shapes(p), max_iter, device)
            row.update(n=n, p=p, floor_seconds=floor, per_iteration_seconds=row["seconds"] / max(row["iterations"], 1))
            rows.append(row)
        step = iht_iteration(problem, k, max_iter, "exact", device)
        rows.append(
            {
                "solver": "iht_iteration",
                "n": n,
                "p": p,
                "floor_seconds": floor,
                "seconds": step["per_iteration_seconds"],
                "iterations": 1,
            }
        )
        del problem
    exponents = {}
    for method in (*SOLVERS, "iht_iteration"):
        mine = [r for r in rows if r["solver"] == method]
        exponents[method] = fitted_exponent([r[axis] for r in mine], [r["seconds"] for r in mine])
    floors = [r for r in rows if r["solver"] == "iht_iteration"]
    exponents["floor"] = fitted_exponent([r[axis] for r in floors], [r["floor_seconds"] for r in floors])
    return {"axis": axis, "fixed": fixed, "kept": fraction, "max_iter": max_iter, "rows": rows, "exponents": exponents}


def bench_block_large(p: int, n: int, fraction: float, max_memory_gb: float, l2: float, device, log: Log) -> dict:
    """Block backsolve on p synthetic weights with G generated one column group at a time, as
    the memory planner groups them for a budget of `max_memory_gb`."""
    shapes = synthetic_shapes(p)
    blocks = layer_blocks(shapes, BLOCK_SIZE)
    plan = plan_fisher(
        n=n,
        sizes=[s[0] * s[1] for s in shapes],
        cuts=[stop for _, stop in blocks],
        dtype=torch.float32,
        chunk_size=1,
        activation_bytes=0,
        budget=int(max_memory_gb * GIB),
        workspace=block_workspace_bytes(n, blocks, torch.float32),
    )
    log(f"  block: p = {p:,}, n = {n}, {len(blocks):,} blocks in {len(plan.groups)} group(s) for {max_memory_gb} GiB")
    w_bar = synthetic_weights(p, seed=1, device=device)
    generation = 0.0

    def columns(start: int, stop: int) -> torch.Tensor:
        nonlocal generation
        G, seconds = timed(lambda: synthetic_columns(n, start, stop, seed=0, device=device), device)
        generation += seconds
        return G

    with peak_memory(device) as peak:
        result, seconds = timed(
            lambda: block_backsolve(w_bar, int(fraction * p), blocks, columns, l2, groups=plan.groups), device
        )
    return {
        "n": n,
        "p": p,
        "kept": fraction,
        "blocks": len(blocks),
        "groups": len(plan.groups),
        "budget_gib": max_memory_gb,
        "planned_peak_gib": plan.peak_bytes / GIB,
        "added_peak_gib": peak.added_gib,
        "start_gib": peak.start_gib,
        "peak_gib": peak.peak_gib,
        "within_budget": peak.added_gib <= max_memory_gb,
        "solve_seconds": seconds - generation,
        "generation_seconds": generation,
        "objective": result.objective,
        "objective_magnitude": result.objective_magnitude,
    }


def _swap_row(problem: Problem, k: int, swaps: int, device) -> dict:
    """One swap-search measurement: setup, seconds per swap, objectives."""
    floor = floor_seconds(problem, device)
    _, setup = timed(lambda: swap_search(problem, k, max_swaps=0), device)
    result, seconds = timed(lambda: swap_search(problem, k, max_swaps=swaps), device)
    per_swap = (seconds - setup) / max(result.iterations, 1)
    return {
        "swaps": result.iterations,
        "setup_seconds": setup,
        "per_swap_seconds": per_swap,
        "per_swap_over_floor": per_swap / floor,
        "floor_seconds": floor,
        "objective_backsolve": backsolve(problem, k).objective,
        "objective": result.objective,
        "converged": result.converged,
    }


def bench_swap(sizes: Sequence[int], n: int, fraction: float, swaps: int, l2: float, device, log: Log) -> dict:
    """The swap search at growing p (n fixed, k = fraction·p): seconds of its setup (factorising
    M = ridge·I + G_S G_Sᵀ and the first fit, i.e. a run with no swap), seconds per accepted swap
    over at most `swaps` swaps, both against the floor, with the exponents in p."""
    rows = []
    for p in sizes:
        log(f"  swap: n = {n}, p = {p:,}")
        problem = synthetic_problem(n, p, l2, seed=0, device=device)
        k = int(fraction * p)
        rows.append({"n": n, "p": p, "k": k, **_swap_row(problem, k, swaps, device)})
        del problem
    exponents = {
        key: fitted_exponent([r["p"] for r in rows], [r[key] for r in rows])
        for key in ("setup_seconds", "per_swap_seconds", "floor_seconds")
    }
    return {"n": n, "kept": fraction, "max_swaps": swaps, "rows": rows, "exponents": exponents}
