"""Assemble the report: report.md (summary, tables, figures), CSVs and PNGs in one folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import UserError
from ..outputs import RESULTS_FILE
from .deploy import deploy_section
from .figures import ablation_figure, accuracy_figure, runtime_figure
from .runs import load_runs, method_rank
from .tables import (
    PAPER_SOURCES,
    Cell,
    ablation_keys,
    format_accuracy,
    markdown_grid,
    markdown_paper_table,
    markdown_table,
    paper_value,
    paper_values,
    summarize,
    value_order,
    write_cells_csv,
    write_table_csv,
)

REPORT_FILE = "report.md"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _sections(cells: list[Cell]) -> dict[tuple, list[Cell]]:
    sections: dict[tuple, list[Cell]] = {}
    for c in cells:
        sections.setdefault((c.experiment, c.setting), []).append(c)
    return sections


def _signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def _comparison(cells: list[Cell], papers: dict) -> list[str]:
    """Per method: ours − the paper's value, its range over sparsities, for each source."""
    lines = []
    for method in sorted({c.method for c in cells}, key=method_rank):
        mine = [c for c in cells if c.method == method]
        for source in PAPER_SOURCES:
            diffs = [
                (c.accuracy - v, c.sparsity)
                for c in mine
                if (v := paper_value(papers, source, c.setting, c.paper_method, c.sparsity)) is not None
            ]
            if not diffs:
                continue
            low, high = min(diffs), max(diffs)
            at_least = sum(round(d, 2) >= 0 for d, _ in diffs)  # as the tables show them
            lines.append(
                f"- {method} − {source.replace('_', ' ')}: from {_signed(low[0])} (at {low[1]:g}) to {_signed(high[0])} "
                f"(at {high[1]:g}); at or above it at {at_least}/{len(diffs)} sparsities"
            )
    return lines


def _table_section(cells: list[Cell], papers: dict, title: str, slug: str, out: Path) -> tuple[list[str], list[str]]:
    """Markdown and summary lines of a sparsity x method section; writes its CSV and figures."""
    write_table_csv(cells, out / f"table_{slug}.csv")
    accuracy = accuracy_figure(cells, papers, title, out / f"accuracy_{slug}.png")
    runtime = runtime_figure(cells, title, out / f"runtime_{slug}.png")
    seeds = sorted({c.seeds for c in cells})
    md = [
        f"Test accuracy (%) after pruning; mean ± sample std over seeds ({'-'.join(map(str, seeds))} per cell; "
        f"no ± for one seed). Dense: {cells[0].dense_accuracy:.2f}.",
        "",
        markdown_table(cells),
        "",
        f"CSV: `table_{slug}.csv`",
        "",
    ]
    for source in PAPER_SOURCES:
        table = markdown_paper_table(cells, papers, source)
        if table:
            md += [f"{source.replace('_', ' ').capitalize()} ({papers[source]['source']}):", "", table, ""]
    md += [f"![accuracy]({accuracy.name})", "", f"![runtime]({runtime.name})", ""]
    best = []
    for s in sorted({c.sparsity for c in cells}):
        top = max((c for c in cells if c.sparsity == s), key=lambda c: c.accuracy)
        best.append(f"{s:g}: {top.method} {top.accuracy:.2f}")
    summary = [f"Best method per sparsity: {'; '.join(best)}.", *_comparison(cells, papers)]
    return md, summary


def _ablation_section(cells: list[Cell], papers: dict, title: str, slug: str, out: Path) -> tuple[list[str], list[str]]:
    """Markdown and summary lines of an ablation section (one figure per numeric swept key)."""
    keys = ablation_keys(cells)
    md, summary = [], []
    numeric = [key for key in keys if all(isinstance(dict(c.ablation)[key], (int, float)) for c in cells)]
    for key in numeric or keys[:1]:  # a text-valued key (e.g. pruner.init) only names the series
        figure = ablation_figure(cells, key, papers, f"{title}: {key}", out / f"ablation_{slug}_{_slug(key)}.png")
        md += [f"![{key}]({figure.name})", ""]
    header = ["method", "sparsity", *keys, "seeds", "accuracy (%)", "objective / n", "seconds"]
    rows = []
    for c in cells:
        values = dict(c.ablation)
        objective = "" if c.objective_per_sample is None else f"{c.objective_per_sample:.4g}"
        if c.objective_per_sample_std is not None:
            objective += f" ± {c.objective_per_sample_std:.2g}"
        rows.append(
            [
                c.method,
                f"{c.sparsity:g}",
                *[str(values.get(k, "")) for k in keys],
                str(c.seeds),
                format_accuracy(c.accuracy, c.accuracy_std),
                objective,
                f"{c.seconds:.1f}",
            ]
        )
    md += [markdown_grid(header, rows), ""]
    key = keys[0]  # the preset's first ablation key is the x axis; the others name the series
    series: dict[tuple, list[Cell]] = {}
    for c in cells:
        others = tuple((k, v) for k, v in c.ablation if k != key)
        series.setdefault((c.method, c.sparsity, others), []).append(c)
    for (method, sparsity, others), members in series.items():
        ordered = sorted(members, key=lambda c: value_order(dict(c.ablation)[key]))
        low, high = ordered[0], ordered[-1]
        names = ", ".join([method, f"sparsity {sparsity:g}", *[f"{k}={v}" for k, v in others]])
        line = f"- {names}: {key} {dict(low.ablation)[key]} → {dict(high.ablation)[key]}: accuracy {low.accuracy:.2f} → {high.accuracy:.2f}"
        if low.objective_per_sample is not None and high.objective_per_sample is not None:
            line += f", objective / n {low.objective_per_sample:.4g} → {high.objective_per_sample:.4g}"
        summary.append(line)
    return md, summary


def build_report(folder: Path, out: Path | None = None) -> Path:
    """Read every results.json under `folder`; write the report into `out` (default
    folder/report), replacing it whole once complete, except for the notes kept beside an
    earlier report (its `*.txt` files: the report writes none). Returns the path of report.md."""
    if not folder.is_dir():
        raise UserError(f"report folder not found: {folder}")
    runs = load_runs(folder)
    if not runs:
        raise UserError(f"no {RESULTS_FILE} under {folder}; give a run or sweep folder such as outputs/multirun/<name>")
    out = out or folder / "report"
    if out.exists() and not (out / REPORT_FILE).is_file():
        raise UserError(f"{out} exists and is not an earlier report; give --out a new folder or an earlier report's")
    partial = out.with_name(out.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    papers = paper_values()
    cells = summarize(runs)
    summary = [f"# Report on {folder}", "", f"{len(runs)} runs in {len(cells)} cells.", ""]
    body: list[str] = []
    for (experiment, setting), members in _sections(cells).items():
        title = setting if experiment is None else f"{experiment} ({setting})"
        slug = _slug(title)
        ablation = any(c.ablation for c in members)
        md, lines = (_ablation_section if ablation else _table_section)(members, papers, title, slug, partial)
        if not ablation:  # an ablation compares searches at the same sparsities: same sizes and MACs
            md += deploy_section(
                [r for r in runs if (r.experiment, r.setting) == (experiment, setting)], title, slug, partial
            )
        body += [f"## {title}", "", *md, *lines, ""]
        summary += [f"**{title}** — {sum(c.seeds for c in members)} runs.", *lines, ""]
    write_cells_csv(cells, papers, partial / "cells.csv")
    (partial / REPORT_FILE).write_text("\n".join(summary + body) + "\n")
    if out.is_dir():
        for note in out.glob("*.txt"):
            shutil.copy2(note, partial / note.name)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out / REPORT_FILE
