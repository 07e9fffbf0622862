"""Runs averaged over seeds into cells, and the paper-layout tables made of them."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .runs import Run, method_rank

PAPER_SOURCES = ("published", "reference_code")


@dataclass(frozen=True)
class Cell:
    """One method at one sparsity (and ablation setting), over its seeds."""

    experiment: str | None
    setting: str
    method: str
    paper_method: str
    sparsity: float
    ablation: tuple
    seeds: int
    accuracy: float
    accuracy_std: float | None  # sample standard deviation; None for a single seed
    dense_accuracy: float
    measured_sparsity: float
    seconds: float
    solver_seconds: float
    objective_per_sample: float | None  # the solver objective / n, comparable across n
    objective_per_sample_std: float | None


def ablation_keys(cells: list[Cell]) -> list[str]:
    """The swept keys, in the order the preset lists them."""
    return list(dict.fromkeys(key for c in cells for key, _ in c.ablation))


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(runs: list[Run]) -> list[Cell]:
    """Average the runs of each cell over seeds; cells sorted by setting, method, sparsity."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.cell(), []).append(run)
    cells = []
    for (experiment, setting, method, sparsity, ablation), members in groups.items():
        accuracy, accuracy_std = _mean_std([r.accuracy for r in members])
        per_sample = [r.objective / r.n_samples for r in members if r.objective is not None and r.n_samples]
        objective, objective_std = _mean_std(per_sample) if len(per_sample) == len(members) else (None, None)
        cells.append(
            Cell(
                experiment=experiment,
                setting=setting,
                method=method,
                paper_method=members[0].paper_method,
                sparsity=sparsity,
                ablation=ablation,
                seeds=len(members),
                accuracy=accuracy,
                accuracy_std=accuracy_std,
                dense_accuracy=statistics.fmean(r.dense_accuracy for r in members),
                measured_sparsity=statistics.fmean(r.measured_sparsity for r in members),
                seconds=statistics.fmean(r.seconds for r in members),
                solver_seconds=statistics.fmean(r.solver_seconds for r in members),
                objective_per_sample=objective,
                objective_per_sample_std=objective_std,
            )
        )
    return sorted(
        cells,
        key=lambda c: (str(c.experiment), c.setting, method_rank(c.method), c.sparsity, _ablation_order(c.ablation)),
    )


def value_order(value: object) -> tuple:
    """A sort key for ablation values of mixed kinds (a swept pruner.l2 of 1e-4 and "auto"):
    numbers first, in order, then the others by their text."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _ablation_order(ablation: tuple) -> tuple:
    return tuple((key, value_order(value)) for key, value in ablation)


def paper_values() -> dict[str, dict]:
    """{"published" | "reference_code": {"source": ..., "settings": {model/dataset: {method: {sparsity: acc}}}}}."""
    return json.loads(resources.files(__package__).joinpath("paper_values.json").read_text())


def paper_value(papers: dict, source: str, setting: str, method: str, sparsity: float) -> float | None:
    """The value `source` reports for a one-shot cell, or None."""
    table = papers[source]["settings"].get(setting, {}).get(method, {})
    return table.get(f"{sparsity:g}")


def format_accuracy(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def paper_layout(cells: list[Cell]) -> tuple[list[float], list[str], dict[tuple[float, str], Cell]]:
    """Rows (sparsities), columns (methods) and the cells of one setting's table."""
    sparsities = sorted({c.sparsity for c in cells})
    methods = sorted({c.method for c in cells}, key=method_rank)
    return sparsities, methods, {(c.sparsity, c.method): c for c in cells}


def markdown_table(cells: list[Cell]) -> str:
    """Rows sparsity, columns methods, mean ± std over seeds (test accuracy, %)."""
    sparsities, methods, grid = paper_layout(cells)
    rows = []
    for s in sparsities:
        row = [f"{s:g}"]
        for m in methods:
            cell = grid.get((s, m))
            row.append(format_accuracy(cell.accuracy, cell.accuracy_std) if cell else "")
        rows.append(row)
    return markdown_grid(["sparsity", *methods], rows)


def markdown_paper_table(cells: list[Cell], papers: dict, source: str) -> str | None:
    """The same rows with the values `source` gives for the methods it has; None if it has none."""
    sparsities, _, _ = paper_layout(cells)
    setting = cells[0].setting
    table = papers[source]["settings"].get(setting)
    if not table:
        return None
    methods = sorted((m for m in table if m != "dense"), key=method_rank)
    rows = [
        [
            f"{s:g}",
            *[(f"{v:.2f}" if (v := paper_value(papers, source, setting, m, s)) is not None else "") for m in methods],
        ]
        for s in sparsities
    ]
    return markdown_grid(["sparsity", *methods], rows)


def write_table_csv(cells: list[Cell], path: Path) -> None:
    """The paper layout as CSV: a mean and a std column per method (std empty for one seed)."""
    sparsities, methods, grid = paper_layout(cells)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sparsity", *[f"{m}{suffix}" for m in methods for suffix in ("", " std", " seeds")]])
        for s in sparsities:
            row: list = [f"{s:g}"]
            for m in methods:
                cell = grid.get((s, m))
                if cell is None:
                    row += ["", "", ""]
                else:
                    std = "" if cell.accuracy_std is None else f"{cell.accuracy_std:.4f}"
                    row += [f"{cell.accuracy:.4f}", std, cell.seeds]
            writer.writerow(row)


def _blank_if_none(value):
    return "" if value is None else value


def write_cells_csv(cells: list[Cell], papers: dict, path: Path) -> None:
    """Every cell in long form, with the ablation values and the paper's numbers where they exist."""
    keys = ablation_keys(cells)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "experiment",
                "setting",
                "method",
                "sparsity",
                *keys,
                "seeds",
                "accuracy",
                "accuracy_std",
                "dense_accuracy",
                "measured_sparsity",
                "seconds",
                "solver_seconds",
                "objective_per_sample",
                "objective_per_sample_std",
                *[f"paper_{source}" for source in PAPER_SOURCES],
            ]
        )
        for c in cells:
            values = dict(c.ablation)
            writer.writerow(
                [
                    c.experiment or "",
                    c.setting,
                    c.method,
                    f"{c.sparsity:g}",
                    *[values.get(k, "") for k in keys],
                    c.seeds,
                    c.accuracy,
                    _blank_if_none(c.accuracy_std),
                    c.dense_accuracy,
                    c.measured_sparsity,
                    c.seconds,
                    c.solver_seconds,
                    _blank_if_none(c.objective_per_sample),
                    _blank_if_none(c.objective_per_sample_std),
                    *[
                        _blank_if_none(paper_value(papers, s, c.setting, c.paper_method, c.sparsity))
                        for s in PAPER_SOURCES
                    ],
                ]
            )
