"""Reading the results.json files of a folder of runs into flat records."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..outputs import RESULTS_FILE, dotted_keys
from ..run.results import Results

log = logging.getLogger(__name__)

METHOD_ORDER = ("MP", "WoodFisher", "CBS", "CHITA", "CHITA++")
DEPLOY_FILE = "deploy.json"  # written by `python -m chitalab.export RUN_DIR --format deploy`
WHERE_WORK_IS_KEPT = ("store", "store_dir", "store_max_gb")
"""Pruner settings (last dotted component) that say where G is kept, not what it is: a Fisher
store hit gives the same G as a fresh collection, so runs differing only in these are one method."""


@dataclass(frozen=True)
class Run:
    """One run's numbers, as the report uses them."""

    path: Path
    experiment: str | None
    setting: str  # model/dataset, plus the schedule when it is not one-shot
    method: str  # display label, e.g. "CHITA", "CHITA (block)", "MP [2:4]" (a pattern's label)
    sparsity: float  # requested
    measured_sparsity: float
    seed: int
    accuracy: float
    dense_accuracy: float
    seconds: float
    solver_seconds: float
    objective: float | None
    n_samples: int | None
    ablation: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # the pruner's settings, flattened ("stage_pruner.l2")
    deploy: dict | None = None  # size, MACs and latency (chitalab.export), when the run has them
    pattern: str | None = None  # the pattern's label ("2:4"); None for unstructured runs

    @property
    def paper_method(self) -> str:
        """The paper's column name for this method (variants in parentheses or brackets dropped);
        a run under a pattern keeps its label, so it is never compared with the paper's
        unstructured values."""
        base = base_method(self.method)
        return base if self.pattern is None else f"{base} [{self.pattern}]"

    def cell(self) -> tuple:
        """What identifies a run apart from its seed: repeated cells are averaged over seeds."""
        return (self.experiment, self.setting, self.method, self.sparsity, tuple(self.ablation.items()))


def base_method(label: str) -> str:
    """ "CHITA (block) [l2=0.001]" -> "CHITA": the paper's column name."""
    return label.split(" (")[0].split(" [")[0]


def method_rank(label: str) -> tuple:
    """Sort key: the paper's column order, variants after their base method."""
    base = base_method(label)
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), label)


def _plain(value: object) -> object:
    """A setting as the report compares and prints it: JSON scalars as they are, others as text."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def distinguish_variants(runs: list[Run]) -> list[Run]:
    """Add to the method label the pruner settings that vary between runs of the same method
    (in one experiment and setting) without being swept as an ablation, so an ad-hoc sweep
    such as pruner.update=joint,independent shows one column per value."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.experiment, run.setting, run.method), []).append(run)
    out = []
    for members in groups.values():
        swept = {key.removeprefix("pruner.") for run in members for key in run.ablation}
        keys = sorted(
            key
            for key in {k for run in members for k in run.settings}
            if key not in swept
            and key.rsplit(".", 1)[-1] not in WHERE_WORK_IS_KEPT
            and len({repr(run.settings.get(key)) for run in members}) > 1
        )
        for run in members:
            if keys:
                variant = ", ".join(f"{key}={run.settings.get(key)}" for key in keys)
                run = dataclasses.replace(run, method=f"{run.method} [{variant}]")
            out.append(run)
    return out


def read_deploy(results: Results, run_dir: Path) -> dict | None:
    """The run's deploy block (size, MACs, latency): results.json's `deploy`, else
    run_dir/deploy.json, else None."""
    if results.deploy is not None:
        return results.deploy
    path = run_dir / DEPLOY_FILE
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("skipping %s: not JSON", path)
        return None
    return loaded if isinstance(loaded, dict) else None


def _record(path: Path, results: Results) -> Run:
    setting = f"{results.model}/{results.dataset}"
    if results.schedule != "oneshot":
        setting += f"/{results.schedule}"
    fisher = results.pruner.get("stage_pruner", results.pruner).get("gradients") or {}
    pattern = results.pattern.get("label")
    return Run(
        path=path,
        experiment=results.report.experiment,
        setting=setting,
        method=results.method if pattern is None else f"{results.method} [{pattern}]",
        sparsity=results.sparsity.requested,
        measured_sparsity=results.sparsity.measured,
        seed=results.seed,
        accuracy=results.pruned.test_acc,
        dense_accuracy=results.dense.test_acc,
        seconds=results.seconds.total,
        solver_seconds=results.seconds.solver,
        objective=results.solver.get("objective"),
        n_samples=fisher.get("n_samples"),
        ablation=dict(results.report.ablation),
        settings={k: _plain(v) for k, v in dotted_keys(results.pruner).items() if k != "name"},
        deploy=read_deploy(results, path.parent),
        pattern=pattern,
    )


def load_runs(folder: Path) -> list[Run]:
    """Every results.json under `folder`. When a cell and seed appear more than once (a preset
    run twice into the same parent folder), the newest file wins and the others are named."""
    runs = []
    for path in sorted(folder.rglob(RESULTS_FILE)):
        try:
            runs.append(_record(path, Results.from_json(path.read_text())))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            log.warning("skipping %s: not a chitalab results file (%s)", path, err)
    newest: dict[tuple, tuple[float, Run]] = {}
    for run in distinguish_variants(runs):
        path = run.path
        key = (*run.cell(), run.seed)
        mtime = path.stat().st_mtime
        if key in newest:
            older, newer = sorted([newest[key], (mtime, run)], key=lambda item: item[0])
            log.warning("%s repeats %s; using the newer one", older[1].path, newer[1].path)
            newest[key] = newer
        else:
            newest[key] = (mtime, run)
    return [run for _, run in newest.values()]
