"""Solvers on the paper's MLPNet: backsolve, active set, refit IHT and the swap search, with dead
gradient columns kept or dropped, over seeds x sparsities x ridges; λ chosen per run on held-out
training samples (never test data).

    python -m benchmarks.search_mlpnet [--seeds 0,1,2] [--sparsities 0.9,0.95,0.98]
        [--l2 1e-4,1e-3,1e-2,1e-1] [--methods backsolve,active_set,iht_refit,swap] [--dead keep,drop]

G is collected as the CHITA pruner does (`collect_gradients`, n samples from
the run's `fisher` sample draw, mini-batch 1, float32, column-major) and each solver runs
on float32 as the pruner's would; objectives are evaluated in float64 on the same G. For each
(seed, sparsity, method, dead) the λ whose pruned model has the lowest mean loss on `--holdout`
fresh training samples (their own named draw) is chosen, and the test accuracy of that choice is
reported. Directories come from CHITA_DATA_DIR / CHITA_CHECKPOINT_DIR / CHITA_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from chitalab.data import MNISTDataModule
from chitalab.fisher import collect_gradients
from chitalab.models import MLPNet, load_checkpoint, loss_function
from chitalab.params import keep_count, select_pruned
from chitalab.pruning import DrawKey, SampleStream
from chitalab.solver import Problem, SolveResult, active_set_iht, backsolve, iht
from chitalab.solver.dead import dead_columns, restrict_to_live, solve_live
from chitalab.solver.ridge import with_l2
from chitalab.solver.swap import swap_path, swap_search
from chitalab.training import evaluate_model

from .tables import format_table

METHODS = ("backsolve", "active_set", "iht_refit", "swap", "swap_path")
DEAD = ("keep", "drop")
HELD_OUT_PURPOSE = "ridge_search"  # the held-out draw's own named stream, apart from the Fisher's
CHECKPOINT = "mnist_25_epoch_93.97.ckpt"


def solver(method: str, args: argparse.Namespace) -> Callable[[Problem, int], SolveResult]:
    """`method` with the pruner's defaults, except the budgets given on the command line."""
    if method == "backsolve":
        return backsolve
    if method == "active_set":
        return lambda p, k: active_set_iht(p, k)
    if method == "iht_refit":
        return lambda p, k: iht(p, k, refit=True, max_iter=args.iht_iter)
    if method == "swap":
        return lambda p, k: swap_search(p, k, max_swaps=args.max_swaps)
    raise ValueError(method)


def solve_path(problem: Problem, k: int, l2s: list[float], dead: str, max_swaps: int) -> dict[float, tuple]:
    """swap_path over the whole grid at once (the start's factorisation shared by every λ):
    λ → (result, seconds), the seconds split evenly among the λ."""
    tic = time.perf_counter()
    restriction = restrict_to_live(problem) if dead == "drop" else None
    live = problem if restriction is None else restriction.problem
    results = swap_path([with_l2(live, l2) for l2 in l2s], k, max_swaps=max_swaps)
    if restriction is not None:
        results = [restriction.lift(result) for result in results]
    seconds = (time.perf_counter() - tic) / len(l2s)
    return {l2: (result, seconds) for l2, result in zip(l2s, results)}


@torch.no_grad()
def mean_loss(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    total = sum(
        float(loss_fn(model(x[i : i + batch]), y[i : i + batch], reduction="sum")) for i in range(0, len(x), batch)
    )
    return total / len(x)


def grouped(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by their values of `keys`, in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    return groups


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def parse_list(text: str, kind: type, allowed: tuple | None = None) -> list:
    values = [kind(v) for v in text.split(",") if v.strip()]
    if allowed is not None and any(v not in allowed for v in values):
        raise SystemExit(f"error: got {text!r}; allowed: {', '.join(map(str, allowed))}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_mlpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sparsities", default="0.9,0.95,0.98")
    parser.add_argument("--l2", default="1e-4,1e-3,1e-2,1e-1")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--dead", default=",".join(DEAD), help="keep, drop or both: dead gradient columns")
    parser.add_argument("--n", type=int, default=1000, help="Fisher samples (mini-batch 1)")
    parser.add_argument("--holdout", type=int, default=2000, help="held-out training samples for the λ choice")
    parser.add_argument("--max-swaps", type=int, default=10_000, help="swaps per swap search (per λ)")
    parser.add_argument("--iht-iter", type=int, default=100, help="refit IHT iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/search_mlpnet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = parse_list(args.seeds, int)
    sparsities = parse_list(args.sparsities, float)
    l2s = parse_list(args.l2, float)
    methods = parse_list(args.methods, str, METHODS)
    deads = parse_list(args.dead, str, DEAD)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    model = MLPNet()
    load_checkpoint(model, Path(os.environ.get("CHITA_CHECKPOINT_DIR", "checkpoints")) / CHECKPOINT)
    model.eval()
    data = MNISTDataModule(
        os.environ.get("CHITA_DATA_DIR", "data"), os.environ.get("CHITA_CACHE_DIR", ".cache"), download=False
    )
    data.setup()
    pruned, loss_fn = select_pruned(model), loss_function(model)
    test_loader = data.test_dataloader()
    w_bar = pruned.flatten()
    dense = evaluate_model(model, test_loader, 10)["test_acc"]
    log(f"MLPNet dense test accuracy {dense:.2f}%, p = {w_bar.numel():,}")

    rows = []
    for seed in seeds:
        stream = SampleStream(data, seed)
        x, y = stream.draw(args.n, DrawKey("fisher"))
        G = collect_gradients(model, pruned, loss_fn, x, y, progress=False)
        x_held, y_held = stream.draw(args.holdout, DrawKey(HELD_OUT_PURPOSE))
        exact = Problem.from_gradients(G.double(), w_bar.double(), 0.0)  # float64 twin for objectives
        log(f"seed {seed}: G {tuple(G.shape)}, {int(dead_columns(G).sum())} dead columns")
        for sparsity in sparsities:
            k = keep_count(sparsity, w_bar.numel())
            paths: dict[str, dict[float, tuple]] = {}
            for l2 in l2s:
                problem = Problem.from_gradients(G, w_bar, l2)
                for dead in deads:
                    for method in methods:
                        if method == "swap_path":
                            if dead not in paths:
                                paths[dead] = solve_path(problem, k, l2s, dead, args.max_swaps)
                            result, seconds = paths[dead][l2]
                        else:
                            solve = solver(method, args)
                            tic = time.perf_counter()
                            result = solve_live(problem, k, solve) if dead == "drop" else solve(problem, k)
                            seconds = time.perf_counter() - tic
                        w = result.w.to(w_bar.dtype)
                        pruned.assign(w)
                        held = mean_loss(model, loss_fn, x_held, y_held)
                        acc = evaluate_model(model, test_loader, 10)["test_acc"]
                        pruned.assign(w_bar)
                        row = dict(
                            seed=seed,
                            sparsity=sparsity,
                            l2=l2,
                            dead=dead,
                            method=method,
                            objective=with_l2(exact, l2).objective(result.w.double()),
                            heldout_loss=held,
                            test_acc=acc,
                            seconds=seconds,
                            iterations=result.iterations,
                            nonzero=int((w != 0).sum()),
                        )
                        rows.append(row)
                        log(
                            f"seed {seed} sparsity {sparsity} l2 {l2:g} dead {dead} {method}: objective "
                            f"{row['objective']:.5g}, held-out loss {held:.4f}, test {acc:.2f}%, {seconds:.1f}s, "
                            f"{result.iterations} iterations"
                        )

    per_l2 = [
        dict(
            sparsity=key[0],
            l2=key[1],
            dead=key[2],
            method=key[3],
            test_acc=mean_std([r["test_acc"] for r in group]),
            objective=statistics.mean(r["objective"] for r in group),
            heldout_loss=statistics.mean(r["heldout_loss"] for r in group),
            seconds=statistics.mean(r["seconds"] for r in group),
        )
        for key, group in grouped(rows, ("sparsity", "l2", "dead", "method")).items()
    ]
    chosen = []
    for group in grouped(rows, ("sparsity", "dead", "method", "seed")).values():
        best = min(group, key=lambda r: r["heldout_loss"])
        chosen.append({**best, "grid_seconds": sum(r["seconds"] for r in group)})
    summary = [
        dict(
            sparsity=key[0],
            dead=key[1],
            method=key[2],
            l2_chosen=" ".join(f"{r['l2']:g}" for r in group),
            test_acc=mean_std([r["test_acc"] for r in group]),
            objective=statistics.mean(r["objective"] for r in group),
            solve_seconds=statistics.mean(r["seconds"] for r in group),
            grid_seconds=statistics.mean(r["grid_seconds"] for r in group),
        )
        for key, group in grouped(chosen, ("sparsity", "dead", "method")).items()
    ]
    print(
        format_table(
            f"MLPNet, n = {args.n}, seeds {args.seeds}: every λ (test accuracy mean ± std over seeds; objective "
            "in float64, comparable within one λ)",
            per_l2,
            ["sparsity", "l2", "dead", "method", "test_acc", "objective", "heldout_loss", "seconds"],
        )
    )
    print()
    print(
        format_table(
            f"MLPNet, λ chosen per seed by the lowest mean loss on {args.holdout} held-out training samples "
            f"(l2 grid {args.l2}); test accuracy of that choice; solve_seconds at the chosen λ, grid_seconds all λ",
            summary,
            ["sparsity", "dead", "method", "l2_chosen", "test_acc", "objective", "solve_seconds", "grid_seconds"],
        )
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "dense_test_acc": dense, "rows": rows, "per_l2": per_l2, "chosen": summary}
    (out / "latest.json").write_text(json.dumps(report, indent=1))
    log(f"wrote {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
