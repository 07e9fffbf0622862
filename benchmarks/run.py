"""One command for every benchmark: `python -m benchmarks.run [--quick] [--sections ...]`.

Prints a table per section and writes all figures, with the machine they came from, to
<out>/<UTC time>.json and <out>/latest.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .deploy_bench import bench_deploy
from .fisher_bench import bench_model
from .job_bench import bench_jobs
from .measure import machine, memory_kind
from .solver_bench import bench_block_large, bench_floor, bench_resnet20, bench_scaling, bench_swap
from .sweep_bench import bench_sweep
from .tables import format_table

SECTIONS = ("fisher", "solvers", "floor", "scaling_p", "scaling_n", "block", "deploy", "swap", "job", "sweep")
L2 = 1e-3


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one benchmark run."""

    fisher_n: int = 1000
    fisher_chunk: int = 64
    solver_n: int = 1000
    kept: tuple[float, ...] = (0.1, 0.3)
    max_iter: int = 100
    floor_sizes: tuple[tuple[int, int], ...] = ((1000, 10**5), (1000, 10**6))
    floor_iterations: int = 10
    scaling_p: tuple[int, ...] = (10**4, 10**5, 10**6, 10**7)
    scaling_p_n: int = 100
    scaling_n: tuple[int, ...] = (100, 250, 500, 1000, 2000)
    scaling_n_p: int = 268_336
    scaling_iter: int = 20
    block_p: int = 10**7
    block_n: int = 1000
    block_memory_gb: float = 2.0
    deploy_sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    deploy_batches: tuple[int, ...] = (1, 64)
    deploy_repeats: int = 15
    deploy_budget_s: float = 6.0  # per model, sparsity and batch size (at least 3 rounds each)
    deploy_wide: int = 4096
    deploy_threads: int = 1  # fixed, so that timings do not stall on shared cores (docs/benchmarks.md)
    deploy_sweep: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
    deploy_layers: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
        ("linear", (4096, 4096), (4096,)),
        ("linear", (40, 784), (784,)),
        ("conv", (16, 16, 3, 3), (16, 32, 32)),
        ("conv", (64, 64, 3, 3), (64, 8, 8)),
    )
    swap_p: tuple[int, ...] = (10**4, 10**5, 10**6)
    swap_n: int = 100
    swap_swaps: int = 50
    job_quick: bool = False  # the job and sweep sections on tiny_mlp instead of MLPNet and ResNet20


FULL = Sizes()
QUICK = Sizes(
    fisher_n=8,
    fisher_chunk=4,
    solver_n=8,
    max_iter=3,
    floor_sizes=((20, 2000),),
    floor_iterations=3,
    scaling_p=(1000, 4000),
    scaling_p_n=20,
    scaling_n=(10, 20),
    scaling_n_p=4000,
    scaling_iter=3,
    block_p=200_000,
    block_n=50,
    block_memory_gb=0.05,
    deploy_sparsities=(0.9,),
    deploy_batches=(1, 4),
    deploy_repeats=3,
    deploy_budget_s=0.5,
    deploy_wide=256,
    deploy_sweep=(0.5, 0.95),
    deploy_layers=(("linear", (256, 256), (256,)), ("conv", (8, 8, 3, 3), (8, 8, 8))),
    swap_p=(1000, 4000),
    swap_n=20,
    swap_swaps=5,
    job_quick=True,
)


class BadOption(Exception):
    """A command-line value that is not allowed; the message names it and what is."""


def parse_sections(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SECTIONS]
    if bad or not chosen:
        raise BadOption(f"--sections got {text!r}; allowed: {', '.join(SECTIONS)} (comma-separated)")
    return [s for s in SECTIONS if s in chosen]


def parse_device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise BadOption(f"--device got {text!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise BadOption(f"--device got {text!r}; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadOption(f"--device got {text!r} but CUDA is not available here; use --device cpu or auto")
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's, all cores)")
    parser.add_argument(
        "--deploy-threads", type=int, default=1, help="torch threads for the deploy section's latency (default 1)"
    )
    parser.add_argument("--out", default="outputs/benchmarks", help="folder for the JSON results")
    return parser


def _fisher(sizes: Sizes, device, log) -> tuple[dict, str]:
    results = [bench_model(name, sizes.fisher_n, sizes.fisher_chunk, device, log) for name in ("mlpnet", "resnet20")]
    rows = [row for r in results for row in r["rows"]]
    text = format_table(
        f"Fisher collection, n = {sizes.fisher_n}, chunks of {sizes.fisher_chunk} (interleaved rounds; "
        "batched_reference = plain mini-batch gradients, a lower bound, not a Fisher)",
        rows,
        [
            "model",
            "method",
            "n",
            "p",
            "seconds",
            "samples_per_s",
            "speedup_vs_naive",
            "x_batched",
            "added_peak_gib",
            "peak_gib",
        ],
    )
    for r in results:
        errors = ", ".join(f"{m} {e:.1e}" for m, e in r["error_vs_float64"].items())
        agree = ", ".join(f"{m} {same} ({r['max_abs_diff_over_max_abs'][m]:.1e})" for m, same in r["same_G"].items())
        text += (
            f"\n  {r['rows'][0]['model']}: {r['source']}; G allclose to naive G (1% of max |G|; "
            f"max |difference| / max |G|): {agree}; max error / max |G| against float64 gradients: {errors}"
        )
    return {"models": results}, text


def _solvers(sizes: Sizes, device, log) -> tuple[dict, str]:
    result = bench_resnet20(sizes.solver_n, sizes.kept, L2, sizes.max_iter, device, log)
    text = format_table(
        f"Solvers on ResNet20 gradients (n = {result['n']}, p = {result['p']:,}, l2 = {L2}, IHT max "
        f"{sizes.max_iter} iterations; {result['source']}; Fisher {result['fisher_seconds']:.1f} s, not included)",
        result["rows"],
        [
            "solver",
            "kept",
            "dtype",
            "seconds",
            "iterations",
            "objective",
            "objective_float64",
            "relative_difference",
            "per_iteration_over_floor",
            "added_peak_gib",
            "peak_gib",
        ],
    )
    return result, text


def _floor(sizes: Sizes, device, log) -> tuple[dict, str]:
    rows = bench_floor(sizes.floor_sizes, 0.1, sizes.floor_iterations, L2, device, log)
    text = format_table(
        f"IHT iteration against the floor (one G·v + one Gᵀ·r), synthetic G, k = 10%, up to "
        f"{sizes.floor_iterations} iterations from w̄'s top-k, L given",
        rows,
        [
            "n",
            "p",
            "step",
            "floor_seconds",
            "per_iteration_seconds",
            "per_iteration_over_floor",
            "iterations",
            "lipschitz_seconds",
            "added_peak_gib",
            "peak_gib",
        ],
    )
    return {"rows": rows}, text


def _scaling(axis: str) -> Callable:
    def section(sizes: Sizes, device, log) -> tuple[dict, str]:
        values, fixed = (sizes.scaling_p, sizes.scaling_p_n) if axis == "p" else (sizes.scaling_n, sizes.scaling_n_p)
        result = bench_scaling(axis, values, fixed, 0.1, sizes.scaling_iter, L2, device, log)
        other = "n" if axis == "p" else "p"
        text = format_table(
            f"Scaling in {axis} ({other} = {fixed:,}, synthetic G, k = 10%, IHT/active set at most "
            f"{sizes.scaling_iter} iterations; iht_iteration = seconds per IHT iteration)",
            result["rows"],
            ["solver", "n", "p", "seconds", "iterations", "floor_seconds", "added_peak_gib", "peak_gib"],
        )
        exps = ", ".join(f"{m} {e:.2f}" for m, e in result["exponents"].items())
        text += f"\n  fitted exponent of seconds in {axis} (least squares on log-log): {exps}"
        return result, text

    return section


def _block(sizes: Sizes, device, log) -> tuple[dict, str]:
    result = bench_block_large(sizes.block_p, sizes.block_n, 0.1, sizes.block_memory_gb, L2, device, log)
    text = format_table(
        "Block backsolve, synthetic G generated one column group at a time (memory plan of chitalab.fisher.memory)",
        [result],
        [
            "p",
            "n",
            "blocks",
            "groups",
            "budget_gib",
            "planned_peak_gib",
            "added_peak_gib",
            "peak_gib",
            "within_budget",
            "solve_seconds",
            "generation_seconds",
        ],
    )
    return result, text


def _deploy(sizes: Sizes, device, log) -> tuple[dict, str]:
    if device.type != "cpu":
        log("deploy: CPU latency only; measuring on the CPU")
    result = bench_deploy(
        sizes.deploy_sparsities,
        sizes.deploy_batches,
        sizes.deploy_repeats,
        sizes.deploy_budget_s,
        sizes.deploy_wide,
        sizes.deploy_sweep,
        sizes.deploy_layers,
        log,
        sizes.deploy_threads,
    )
    sources = "; ".join(
        f"{m['model']}: {m['source']}, {m['pruned_weights']:,} pruned weights" for m in result["models"]
    )
    text = format_table(
        f"Deploy: end-to-end CPU latency (ms per batch, median of interleaved rounds, {result['threads']} torch "
        "thread(s); min_ = fastest round), global magnitude pruning; sparse = every pruned layer CSR, fastest = per "
        "layer the faster; "
        f"size = sparse checkpoint / torch.save state dict. {sources}",
        result["rows"],
        [
            "model",
            "sparsity",
            "batch",
            "dense_ms",
            "sparse_ms",
            "fastest_ms",
            "speedup_sparse",
            "speedup_fastest",
            "min_dense_ms",
            "min_fastest_ms",
            "sparse_layers",
            "macs_ratio",
            "sparse_bytes",
            "size_ratio",
        ],
    )
    top = max(
        sizes.deploy_sparsities, key=lambda s: (s <= 0.95, s)
    )  # the per-layer table at 0.95 (or the nearest below)
    layers = [r for r in result["layers"] if r["sparsity_target"] == top]
    text += "\n\n" + format_table(
        f"Deploy: per pruned layer at sparsity {top} (ms, median; input = what the layer receives in the model)",
        layers,
        ["model", "batch", "name", "kind", "shape", "sparsity", "dense_ms", "sparse_ms", "speedup"],
    )
    sweep_rows = [{**r, "input": s["input"]} for s in result["sweeps"] for r in s["rows"]]
    text += "\n\n" + format_table(
        "Deploy: single layers with random masks (ms, median; im2col_ms = F.unfold alone, the floor of the sparse conv)",
        sweep_rows,
        ["kind", "shape", "input", "sparsity", "dense_ms", "sparse_ms", "speedup", "im2col_ms"],
    )
    for s in result["sweeps"]:
        value = s["break_even_sparsity"]
        verdict = (
            f"sparse faster from sparsity {value:.3f}"
            if value is not None
            else "sparse never faster up to the highest sparsity measured"
        )
        text += f"\n  break-even {s['kind']} {s['shape']} on {s['input']}: {verdict}"
    text += "\n\n" + format_table(
        "Deploy: linear kernels at sparsity 0.95 (ms, median)",
        result["linear_kernels"],
        list(result["linear_kernels"][0]),
    )
    return result, text


def _swap(sizes: Sizes, device, log) -> tuple[dict, str]:
    result = bench_swap(sizes.swap_p, sizes.swap_n, 0.1, sizes.swap_swaps, L2, device, log)
    text = format_table(
        f"Swap search, synthetic G, n = {sizes.swap_n}, k = 10%, at most {sizes.swap_swaps} swaps from the "
        "backsolve support (setup = factorisation and first fit; floor = one G·v + one Gᵀ·r)",
        result["rows"],
        [
            "n",
            "p",
            "k",
            "swaps",
            "setup_seconds",
            "per_swap_seconds",
            "per_swap_over_floor",
            "floor_seconds",
            "objective_backsolve",
            "objective",
        ],
    )
    exps = ", ".join(f"{m} {e:.2f}" for m, e in result["exponents"].items())
    text += f"\n  fitted exponent in p (least squares on log-log): {exps}"
    return result, text


def _job(sizes: Sizes, device, log) -> tuple[dict, str]:
    result = bench_jobs(sizes.job_quick, device, log)
    text = ""
    for name, job in result.items():
        text += format_table(
            f"One cold one-shot job, {name}: {job['command']} (load {job['load']:.1f} at the start; "
            f"dense {job['dense_acc']:.2f}, pruned {job['pruned_acc']:.2f}); floors measured warm in this process",
            job["rows"],
            ["model", "phase", "seconds", "floor_seconds"],
        )
        text += "\n"
    return result, text.rstrip()


def _sweep(sizes: Sizes, device, log) -> tuple[dict, str]:
    result = bench_sweep(sizes.job_quick, log)
    rows = [{"caches": state, **job} for state in ("off", "on") for job in result[state]["jobs"]]
    text = format_table(
        f"Sweep {result['sweep']} over sparsity {', '.join(map(str, result['sparsities']))}, caches across jobs "
        "off, then on (each multirun in a fresh process from an empty cache)",
        rows,
        ["caches", "sparsity", "pruned_acc", "objective", "fisher_store", "dense_cached", "seconds"],
    )
    text += (
        f"\n  wall: off {result['off']['wall_seconds']:.1f} s (load {result['off']['load']:.1f}), "
        f"on {result['on']['wall_seconds']:.1f} s (load {result['on']['load']:.1f}): ratio {result['ratio']:.2f}; "
        f"hits: Fisher {result['fisher_hits']}, dense {result['dense_hits']}; "
        f"identical results: {result['identical_results']}"
    )
    return result, text


RUNNERS = {
    "fisher": _fisher,
    "solvers": _solvers,
    "floor": _floor,
    "scaling_p": _scaling("p"),
    "scaling_n": _scaling("n"),
    "block": _block,
    "deploy": _deploy,
    "swap": _swap,
    "job": _job,
    "sweep": _sweep,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sections = parse_sections(args.sections)
        device = parse_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise BadOption(f"--threads got {args.threads}; allowed: a positive integer")
        if args.deploy_threads < 1:
            raise BadOption(f"--deploy-threads got {args.deploy_threads}; allowed: a positive integer")
    except BadOption as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = dataclasses.replace(QUICK if args.quick else FULL, deploy_threads=args.deploy_threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    report = {"machine": machine(device), "memory": memory_kind(device), "quick": args.quick, "sections": {}}
    log(f"device {device}, {torch.get_num_threads()} threads; sections: {', '.join(sections)}")
    for name in sections:
        log(f"section {name}")
        result, text = RUNNERS[name](sizes, device, log)
        report["sections"][name] = result
        print(text + "\n", flush=True)
    report["total_seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for path in (out / f"{stamp}.json", out / "latest.json"):
        path.write_text(json.dumps(report, indent=1))
    log(f"wrote {out / f'{stamp}.json'} and latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
