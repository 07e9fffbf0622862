"""PNG figures: accuracy and runtime vs sparsity per method, and ablation curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from .runs import base_method, method_rank
from .tables import PAPER_SOURCES, Cell, paper_value, value_order

PAPER_MARKERS = {"published": ("o", "paper (published)"), "reference_code": ("x", "paper's code, this machine")}


def _colors(methods: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_figure(cells: list[Cell], papers: dict, title: str, path: Path) -> Path:
    """Test accuracy vs sparsity, one line per method (error bars: std over seeds), the paper's
    values as unfilled markers of the method's colour, the dense accuracy dotted."""
    methods = sorted({c.method for c in cells}, key=method_rank)
    colors = _colors(methods)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    marked: set[str] = set()  # paper markers once per paper column, in its first variant's colour
    for m in methods:
        mine = sorted((c for c in cells if c.method == m), key=lambda c: c.sparsity)
        ax.errorbar(
            [c.sparsity for c in mine],
            [c.accuracy for c in mine],
            yerr=[c.accuracy_std or 0 for c in mine],
            color=colors[m],
            marker=".",
            capsize=3,
            label=f"{m} (ours)",
        )
        if base_method(m) in marked:
            continue
        marked.add(base_method(m))
        sparsities = sorted({c.sparsity for c in cells})
        for source in PAPER_SOURCES:
            points = [(s, paper_value(papers, source, cells[0].setting, base_method(m), s)) for s in sparsities]
            points = [(s, v) for s, v in points if v is not None]
            if points:
                marker, label = PAPER_MARKERS[source]
                ax.plot(
                    *zip(*points),
                    linestyle="none",
                    marker=marker,
                    markersize=7,
                    markerfacecolor="none",
                    color=colors[m],
                    label=f"{base_method(m)}, {label}",
                )
    ax.axhline(cells[0].dense_accuracy, color="grey", linestyle=":", label=f"dense ({cells[0].dense_accuracy:.2f})")
    ax.set(xlabel="sparsity (fraction of pruned-layer weights set to zero)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def runtime_figure(cells: list[Cell], title: str, path: Path) -> Path:
    """Seconds per run (solid: whole run, dashed: solver only) vs sparsity, log scale."""
    methods = sorted({c.method for c in cells}, key=method_rank)
    colors = _colors(methods)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        mine = sorted((c for c in cells if c.method == m), key=lambda c: c.sparsity)
        x = [c.sparsity for c in mine]
        ax.plot(x, [c.seconds for c in mine], color=colors[m], marker=".", label=f"{m}: run")
        ax.plot(x, [max(c.solver_seconds, 1e-3) for c in mine], color=colors[m], linestyle="--", label=f"{m}: solver")
    ax.set_yscale("log")
    ax.set(xlabel="sparsity", ylabel="seconds (mean over seeds)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def ablation_figure(cells: list[Cell], key: str, papers: dict, title: str, path: Path) -> Path:
    """Accuracy and solver objective / n vs the ablation `key`, one line per (method, sparsity,
    other swept keys); the paper's value at that sparsity as a dashed level where it exists."""

    def series_name(c: Cell) -> str:
        others = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in c.ablation if k != key)
        return ", ".join(filter(None, [c.method, f"sparsity {c.sparsity:g}", others]))

    series: dict[str, list[Cell]] = {}
    for c in cells:
        series.setdefault(series_name(c), []).append(c)
    colors = _colors(list(series))
    fig, (acc_ax, obj_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    paper_levels: set[tuple[str, float]] = set()
    for name, members in series.items():
        members.sort(key=lambda c: value_order(dict(c.ablation)[key]))
        values = [dict(c.ablation)[key] for c in members]
        x = values if all(isinstance(v, (int, float)) for v in values) else [str(v) for v in values]
        acc_ax.errorbar(
            x,
            [c.accuracy for c in members],
            yerr=[c.accuracy_std or 0 for c in members],
            color=colors[name],
            marker=".",
            capsize=3,
            label=name,
        )
        if all(c.objective_per_sample is not None for c in members):
            obj_ax.errorbar(
                x,
                [c.objective_per_sample for c in members],
                yerr=[c.objective_per_sample_std or 0 for c in members],
                color=colors[name],
                marker=".",
                capsize=3,
                label=name,
            )
        first = members[0]
        value = paper_value(papers, "published", first.setting, first.paper_method, first.sparsity)
        if value is not None and (first.paper_method, first.sparsity) not in paper_levels:
            paper_levels.add((first.paper_method, first.sparsity))
            acc_ax.axhline(
                value,
                color=colors[name],
                linestyle="--",
                linewidth=1,
                label=f"paper {first.paper_method}, sparsity {first.sparsity:g}: {value:.2f}",
            )
    values = [dict(c.ablation)[key] for c in cells]
    numeric = all(isinstance(v, (int, float)) for v in values)
    low, high = (float(min(values)), float(max(values))) if numeric else (0.0, 0.0)
    for ax, ylabel in ((acc_ax, "test accuracy (%)"), (obj_ax, "solver objective / n (lower is better)")):
        if numeric and high > 10 * max(low, 1e-12):
            if low <= 0:  # 0 iterations: linear near zero, logarithmic beyond 1
                ax.set_xscale("symlog", linthresh=1)
                ax.set_xlim(low - 0.2, high * 1.3)
            else:
                ax.set_xscale("log")
                ax.set_xlim(low / 1.3, high * 1.3)
        ax.set(xlabel=key, ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    objectives = [c.objective_per_sample for c in cells if c.objective_per_sample is not None]
    if objectives and min(objectives) > 0 and max(objectives) > 10 * min(objectives):
        obj_ax.set_yscale("log")
    fig.suptitle(title)
    return _save(fig, path)
