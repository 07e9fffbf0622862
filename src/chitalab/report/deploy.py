"""Accuracy against checkpoint size, CPU latency and measured MACs, and per-layer sparsity,
for runs with a `deploy`
block (results.json's, or a deploy.json beside it from `python -m chitalab.export
RUN_DIR --format deploy`). Runs without one are left out of these figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .runs import Run, method_rank

BATCH = "64"  # the figure's batch size: at batch 1 the small models' latency is mostly call overhead


def _latency(run: Run, batch: str, key: str) -> float | None:
    latency = (run.deploy or {}).get("latency") or {}
    return ((latency.get("batches") or {}).get(batch) or {}).get(key)


def deploy_figure(runs: list[Run], title: str, path: Path) -> Path:
    """Left: accuracy vs sparse checkpoint size (the dense pruned.pt size dotted). Right:
    accuracy vs batch-64 CPU latency of the fastest execution (when measured), the dense
    execution as unfilled markers; the latency axis starts at 0, so that noise between
    runs is not magnified into a trend."""
    methods = sorted({r.method for r in runs}, key=method_rank)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (size_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, method in enumerate(methods):
        mine = sorted((r for r in runs if r.method == method), key=lambda r: r.sparsity)
        color = cycle[i % len(cycle)]
        sizes = [r.deploy["checkpoint_bytes"]["sparse"] / 1024 for r in mine if r.deploy]
        size_ax.plot(sizes, [r.accuracy for r in mine], marker=".", color=color, label=method)
        timed = [r for r in mine if _latency(r, BATCH, "fastest_ms") is not None]
        if timed:
            accuracy = [r.accuracy for r in timed]
            time_ax.plot(
                [_latency(r, BATCH, "fastest_ms") for r in timed],
                accuracy,
                marker=".",
                color=color,
                label=f"{method}: fastest",
            )
            time_ax.plot(
                [_latency(r, BATCH, "dense_ms") for r in timed],
                accuracy,
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                color=color,
                label=f"{method}: dense execution",
            )
    dense_kib = max(r.deploy["checkpoint_bytes"]["dense"] for r in runs if r.deploy) / 1024
    size_ax.axvline(dense_kib, color="grey", linestyle=":", label=f"pruned.pt ({dense_kib:.0f} KiB)")
    size_ax.set_xscale("log")
    size_ax.set(xlabel="sparse checkpoint (KiB, log scale)", ylabel="test accuracy (%)", title=f"{title}: size")
    time_ax.set_xlim(left=0)
    time_ax.set(xlabel=f"CPU latency at batch {BATCH} (ms)", ylabel="test accuracy (%)", title=f"{title}: latency")
    for ax in (size_ax, time_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _macs_ratio(run: Run) -> float:
    """Sparse / dense MACs of the run's deploy block (nan without one)."""
    ratio = ((run.deploy or {}).get("macs") or {}).get("ratio")
    return float("nan") if ratio is None else float(ratio)


def _layer_sparsity(run: Run) -> list[tuple[str, float]]:
    layers = ((run.deploy or {}).get("macs") or {}).get("layers") or []
    return [(layer["name"], layer["sparsity"]) for layer in layers if layer.get("pruned") and "sparsity" in layer]


def macs_figure(runs: list[Run], title: str, path: Path) -> Path:
    """Left: accuracy vs the measured MACs (sparse / dense, per sample), one line per method.
    Right: per-layer sparsity (pruned layers in forward order), one line per method and target
    sparsity, mean over seeds."""
    methods = sorted({r.method for r in runs}, key=method_rank)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig, (macs_ax, layer_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
    names: list[str] = []
    for i, method in enumerate(methods):
        color = cycle[i % len(cycle)]
        mine = sorted((r for r in runs if r.method == method and _macs_ratio(r) is not None), key=_macs_ratio)
        macs_ax.plot(
            [100 * (_macs_ratio(r) or 0) for r in mine],
            [r.accuracy for r in mine],
            marker=".",
            color=color,
            label=method,
        )
        for j, sparsity in enumerate(sorted({r.sparsity for r in mine})):
            profiles = [_layer_sparsity(r) for r in mine if r.sparsity == sparsity]
            if not profiles or not profiles[0]:
                continue
            names = [name for name, _ in profiles[0]]
            mean = [sum(p[k][1] for p in profiles) / len(profiles) for k in range(len(names))]
            layer_ax.plot(
                range(len(names)),
                mean,
                linestyle=styles[j % len(styles)],
                marker=".",
                color=color,
                label=f"{method}, {sparsity:g}",
            )
    macs_ax.set(xlabel="MACs, sparse / dense (%)", ylabel="test accuracy (%)", title=f"{title}: accuracy vs MACs")
    layer_ax.set(xlabel="pruned layer (forward order)", ylabel="sparsity", title=f"{title}: per-layer sparsity")
    if names:
        layer_ax.set_xticks(range(len(names)), [n.removesuffix(".weight") for n in names], rotation=90, fontsize=6)
    for ax in (macs_ax, layer_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def deploy_section(runs: list[Run], title: str, slug: str, out: Path) -> list[str]:
    """Markdown (a figure and a table) for the runs that carry a deploy block; [] when none does."""
    runs = [r for r in runs if r.deploy]
    if not runs:
        return []
    figure = deploy_figure(runs, title, out / f"deploy_{slug}.png")
    macs_plot = macs_figure(runs, title, out / f"macs_{slug}.png")
    rows = [
        "| method | sparsity | seed | accuracy (%) | sparse / dense checkpoint | MACs sparse / dense | batch 1 dense / fastest (ms) | batch 64 dense / fastest (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (method_rank(r.method), r.sparsity, r.seed)):
        d = r.deploy or {}
        size = d["checkpoint_bytes"]
        macs = d.get("macs") or {}
        b1 = f"{_ms(_latency(r, '1', 'dense_ms'))} / {_ms(_latency(r, '1', 'fastest_ms'))}" if d.get("latency") else ""
        b64 = (
            f"{_ms(_latency(r, '64', 'dense_ms'))} / {_ms(_latency(r, '64', 'fastest_ms'))}" if d.get("latency") else ""
        )
        ratio = macs.get("ratio")
        rows.append(
            f"| {r.method} | {r.sparsity:g} | {r.seed} | {r.accuracy:.2f} | {size['sparse'] / 1024:.1f} / "
            f"{size['dense'] / 1024:.1f} KiB ({100 * size['ratio']:.1f}%) | "
            f"{'' if ratio is None else f'{100 * ratio:.1f}%'} | {b1} | {b64} |"
        )
    counts = (((r.deploy or {}).get("latency") or {}).get("threads") for r in runs)
    threads = sorted({int(t) for t in counts if t is not None})
    note = f" Latency with {', '.join(map(str, threads))} torch thread(s)." if threads else ""
    return [
        "### Size and latency",
        "",
        f"Runs with a deploy block ({len(runs)}).{note}",
        "",
        f"![size and latency]({figure.name})",
        "",
        f"![MACs and per-layer sparsity]({macs_plot.name})",
        "",
        *rows,
        "",
    ]
