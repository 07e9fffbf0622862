"""Fisher collection: the hook-based and torch.func (vmap) per-sample gradients against a
per-sample backward loop and plain mini-batch gradients (the floor), same model, same inputs,
same run, interleaved in rounds so that other jobs on shared cores slow all alike."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor

from chitalab.fisher import collect_gradients
from chitalab.params import select_pruned

from .measure import peak_memory, timed
from .workloads import Workload, load_workload

ROUNDS = 4
FISHER_METHODS = ("vmap", "hooks")
REFERENCE_ROWS = 32  # gradients recomputed in float64 to judge the float32 ones


def naive_gradients(work: Workload, x: Tensor, y: Tensor) -> Tensor:
    """What a straightforward implementation does: one forward and backward pass per sample."""
    rows = []
    for i in range(len(x)):
        work.model.zero_grad(set_to_none=True)
        work.loss_fn(work.model(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in work.pruned.params]))
    work.model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def fisher_gradients(work: Workload, x: Tensor, y: Tensor, chunk_size: int, method: str) -> Tensor:
    return collect_gradients(
        work.model, work.pruned, work.loss_fn, x, y, chunk_size=chunk_size, progress=False, method=method
    )


def batch_gradient(work: Workload, x: Tensor, y: Tensor, chunk_size: int) -> None:
    """Reference, not a Fisher method: ordinary mean gradients of mini-batches of `chunk_size`,
    the same convolutions and matrix products as the per-sample methods in one batched pass.
    No per-sample method can be much faster than this."""
    for start in range(0, len(x), chunk_size):
        work.model.zero_grad(set_to_none=True)
        work.loss_fn(work.model(x[start : start + chunk_size]), y[start : start + chunk_size]).backward()
    work.model.zero_grad(set_to_none=True)


def bench_model(name: str, n: int, chunk_size: int, device: torch.device, log: Callable[[str], None]) -> dict:
    """Samples per second of the methods on `name` with n samples, each one's time against the
    batched floor, and whether the Fisher methods agree with the naive loop."""
    work = load_workload(name, n, device)
    methods = {
        "naive": lambda x, y: naive_gradients(work, x, y),
        "vmap": lambda x, y: fisher_gradients(work, x, y, chunk_size, "vmap"),
        "hooks": lambda x, y: fisher_gradients(work, x, y, chunk_size, "hooks"),
        "batched_reference": lambda x, y: batch_gradient(work, x, y, chunk_size),
    }
    for method in FISHER_METHODS:  # warm-up (first-call setup)
        methods[method](work.x[:2], work.y[:2])
    seconds = dict.fromkeys(methods, 0.0)
    peaks = dict.fromkeys(methods, 0.0)
    absolute = dict.fromkeys(methods, 0.0)
    parts: dict[str, list[Tensor]] = {"naive": [], **{m: [] for m in FISHER_METHODS}}
    bounds = [round(i * n / ROUNDS) for i in range(ROUNDS + 1)]
    for r, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        for method, fn in methods.items():
            with peak_memory(device) as peak:
                out, dt = timed(lambda fn=fn, lo=lo, hi=hi: fn(work.x[lo:hi], work.y[lo:hi]), device)
            seconds[method] += dt
            peaks[method] = max(peaks[method], peak.added_gib)
            absolute[method] = max(absolute[method], peak.peak_gib)
            if method in parts:
                parts[method].append(out)
        log(f"  fisher {name}: round {r + 1}/{ROUNDS} done")
    G = {method: torch.cat(chunks) for method, chunks in parts.items()}
    errors = float64_errors(work, G)
    naive = G["naive"]
    scale = float(naive.abs().max())
    max_rel = {m: float((G[m] - naive).abs().max()) / scale if scale > 0 else 0.0 for m in FISHER_METHODS}
    rows = []
    for method in methods:
        rows.append(
            {
                "model": name,
                "method": method,
                "n": n,
                "p": work.pruned.numel,
                "seconds": seconds[method],
                "samples_per_s": n / seconds[method],
                "speedup_vs_naive": seconds["naive"] / seconds[method],
                "x_batched": seconds[method] / seconds["batched_reference"],
                "added_peak_gib": peaks[method],
                "peak_gib": absolute[method],
            }
        )
    return {
        "rows": rows,
        "source": work.source,
        "chunk_size": chunk_size,
        "same_G": {m: bool(torch.allclose(G[m], naive, rtol=1e-2, atol=1e-2 * scale)) for m in FISHER_METHODS},
        "max_abs_diff_over_max_abs": max_rel,
        "error_vs_float64": errors,
    }


def float64_errors(work: Workload, G: dict[str, Tensor], rows: int = REFERENCE_ROWS) -> dict[str, float]:
    """max |G − G₆₄| / max |G₆₄| over the first `rows` gradients of each method, G₆₄ from the
    naive loop on a float64 copy of the model: which of two disagreeing float32 results is off."""
    model64 = copy.deepcopy(work.model).double()
    pruned64 = select_pruned(model64, include=work.pruned.names)
    reference = naive_gradients(
        Workload(work.name, model64, pruned64, work.loss_fn, work.x, work.y, work.source),
        work.x[:rows].double(),
        work.y[:rows],
    )
    scale = float(reference.abs().max())
    return {method: float((g[:rows].double() - reference).abs().max()) / scale for method, g in G.items()}
