"""The swap search and its ridge path against an earlier commit's, side by side in one process.

    python -m benchmarks.search_speed [--baseline 34a8b6f] [--sparsities 0.9,0.98] [--threads 2]

On MLPNet's G (n = 1000 Fisher samples of seed 0, dead columns dropped as the pruner does) and
the `l2: auto` grid, for each sparsity: the baseline's swap search solving every λ alone from
the backsolve point until it converges (its time budget lifted, so both searches stop on the
same rule), and today's `swap_path` over the same grid. Printed per sparsity: seconds, swaps,
seconds per accepted swap, the path's cost over that of its middle λ alone, and the objectives'
ratio. The baseline's `swap.py` is read from git (`git show <commit>:...`) and imported inside
`chitalab.solver`, so it runs against today's problem code; nothing of it is kept. CPU seconds
(`time.process_time`) are printed beside wall seconds: on shared cores they are the steadier
measure. Directories come from CHITA_DATA_DIR / CHITA_CHECKPOINT_DIR.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from chitalab.fisher import collect_gradients
from chitalab.params import keep_count
from chitalab.pruning.ridge_choice import AUTO_GRID
from chitalab.solver import Problem, backsolve
from chitalab.solver.dead import restrict_to_live
from chitalab.solver.ridge import with_l2
from chitalab.solver.swap import swap_path, swap_search

from .measure import machine
from .tables import format_table
from .workloads import load_workload

SWAP_PATH = "src/chitalab/solver/swap.py"


def baseline_module(commit: str) -> ModuleType:
    """`chitalab.solver.swap` as it was at `commit`, imported as chitalab.solver._baseline_swap."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{commit}:{SWAP_PATH}"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    name = "chitalab.solver._baseline_swap"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "chitalab.solver"
    sys.modules[name] = module  # before running it: dataclasses look their module up there
    exec(compile(source, f"{commit}:{SWAP_PATH}", "exec"), module.__dict__)  # our own history, read from git
    return module


def clocked(fn: Callable[[], object]) -> tuple[object, float, float]:
    """fn() with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_sparsity(problem: Problem, k: int, baseline: ModuleType) -> dict:
    """Baseline per λ against today's path over the grid, and today's middle λ alone."""
    problems = [with_l2(problem, l2) for l2 in AUTO_GRID]

    def old() -> list:
        return [baseline.swap_search(p, k, w0=backsolve(p, k).w, time_budget_s=None) for p in problems]

    old_results, old_wall, old_cpu = clocked(old)
    new_results, new_wall, new_cpu = clocked(lambda: swap_path(problems, k))
    middle = problems[len(problems) // 2]
    _, one_wall, one_cpu = clocked(lambda: swap_search(middle, k))
    old_swaps = sum(r.iterations for r in old_results)
    new_swaps = sum(r.iterations for r in new_results)
    ratios = [new.objective / old.objective for new, old in zip(new_results, old_results)]
    return {
        "old_wall_s": old_wall,
        "old_cpu_s": old_cpu,
        "old_swaps": old_swaps,
        "old_ms_per_swap": 1000 * old_cpu / max(old_swaps, 1),
        "new_wall_s": new_wall,
        "new_cpu_s": new_cpu,
        "new_swaps": new_swaps,
        "new_ms_per_swap": 1000 * new_cpu / max(new_swaps, 1),
        "speedup_cpu": old_cpu / new_cpu,
        "path_over_one_l2_cpu": new_cpu / one_cpu,
        "one_l2_cpu_s": one_cpu,
        "one_l2_wall_s": one_wall,
        "objective_ratio_min": min(ratios),
        "objective_ratio_max": max(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="34a8b6f", help="the commit whose swap search is compared")
    parser.add_argument("--sparsities", default="0.9,0.98")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = baseline_module(args.baseline)
    work = load_workload("mlpnet", args.n, torch.device("cpu"))
    G = collect_gradients(work.model, work.pruned, work.loss_fn, work.x, work.y, progress=False)
    full = Problem.from_gradients(G, work.pruned.flatten(), AUTO_GRID[0])
    restriction = restrict_to_live(full)
    problem = full if restriction is None else restriction.problem
    print(f"MLPNet ({work.source}), G {tuple(G.shape)}, {problem.p:,} live columns; {machine(torch.device('cpu'))}")
    rows = []
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        k = keep_count(sparsity, full.p)
        rows.append({"sparsity": sparsity, **bench_sparsity(problem, k, baseline)})
        print(f"sparsity {sparsity}: {rows[-1]}", file=sys.stderr, flush=True)
    columns = list(rows[0])
    print(
        format_table(
            f"swap search: {args.baseline} (each λ alone) against today's path, l2 grid {AUTO_GRID}", rows, columns
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
