"""The report on a synthetic results folder: table values, std over seeds, CSVs, figures."""

from __future__ import annotations

import csv
import os
import statistics
from pathlib import Path

import pytest

from chitalab.errors import UserError
from chitalab.report import build_report
from chitalab.report.readme import update_markdown
from chitalab.report.tables import paper_values
from tests.support import run_module, write_results

ACCURACY = {  # (pruner, sparsity) -> accuracies of seeds 0, 1, 2
    ("mp", 0.5): [93.9, 93.9, 93.9],
    ("mp", 0.9): [90.3, 90.3, 90.3],
    ("chita", 0.5): [93.8, 94.0, 94.2],
    ("chita", 0.9): [92.0, 92.5, 93.0],
}


LABELS = {"mp": "MP", "chita": "CHITA", "woodfisher": "WoodFisher"}


def write_run(
    folder: Path,
    pruner: dict,
    sparsity: float,
    seed: int,
    accuracy: float,
    ablation: dict | None = None,
    experiment: str | None = "paper_oneshot_mlpnet",
    objective: float = 50.0,
) -> None:
    write_results(folder, pruner, LABELS[pruner["name"]], sparsity, seed, accuracy, ablation, experiment, objective)


def pruner_settings(name: str) -> dict:
    if name == "mp":
        return {"name": name}
    return {"name": name, "solver": {"name": "active_set"}, "gradients": {"n_samples": 100}}


@pytest.fixture
def table_folder(tmp_path: Path) -> Path:
    job = 0
    for (name, sparsity), accuracies in ACCURACY.items():
        for seed, acc in enumerate(accuracies):
            write_run(tmp_path / "sweep" / str(job), pruner_settings(name), sparsity, seed, acc)
            job += 1
    return tmp_path / "sweep"


def test_table_has_the_mean_and_std_over_seeds_in_the_paper_layout(table_folder):
    report = build_report(table_folder)
    out = report.parent
    text = report.read_text()
    chita = ACCURACY[("chita", 0.9)]
    assert f"{statistics.fmean(chita):.2f} ± {statistics.stdev(chita):.2f}" in text  # 92.50 ± 0.50
    assert "| sparsity | MP | CHITA |" in text
    assert "| 0.9 | 90.30 ± 0.00 | 92.50 ± 0.50 |" in text
    # The published values for the same rows, from the data file.
    published = paper_values()["published"]["settings"]["mlpnet/mnist"]
    assert f"| 0.9 | {published['MP']['0.9']:.2f} | {published['WoodFisher']['0.9']:.2f} |" in text
    with (out / "table_paper_oneshot_mlpnet_mlpnet_mnist.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["sparsity"] for r in rows] == ["0.5", "0.9"]
    assert float(rows[1]["CHITA"]) == pytest.approx(92.5) and float(rows[1]["CHITA std"]) == pytest.approx(0.5)
    assert rows[1]["CHITA seeds"] == "3"
    with (out / "cells.csv").open() as handle:
        cells = {(r["method"], r["sparsity"]): r for r in csv.DictReader(handle)}
    assert float(cells[("CHITA", "0.9")]["paper_published"]) == published["CHITA"]["0.9"]
    assert float(cells[("CHITA", "0.9")]["objective_per_sample"]) == pytest.approx(0.5)
    for name in ("accuracy", "runtime"):
        png = out / f"{name}_paper_oneshot_mlpnet_mlpnet_mnist.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "Best method per sparsity: 0.5: CHITA 94.00; 0.9: CHITA 92.50." in text


def test_update_copies_a_section_into_its_marked_block(table_folder, tmp_path):
    readme = tmp_path / "docs" / "README.md"
    readme.parent.mkdir()
    readme.write_text(
        "intro\n<!-- report:paper_oneshot_mlpnet -->\nold table\n<!-- /report:paper_oneshot_mlpnet -->\nend\n"
    )
    report = build_report(table_folder, tmp_path / "docs" / "reports" / "mlpnet")
    assert update_markdown(readme, report) == ["paper_oneshot_mlpnet"]
    text = readme.read_text()
    assert text.startswith("intro\n<!-- report:paper_oneshot_mlpnet -->\n") and text.endswith(
        "<!-- /report:paper_oneshot_mlpnet -->\nend\n"
    )
    assert "old table" not in text and "| 0.9 | 90.30 ± 0.00 | 92.50 ± 0.50 |" in text
    assert (
        "Figure (accuracy): `reports/mlpnet/accuracy_paper_oneshot_mlpnet_mlpnet_mnist.png` in the repository." in text
    )
    assert "](" not in text  # no relative links
    update_markdown(readme, report, link_base="https://example.org/raw/main/docs/")
    linked = (
        "![accuracy](https://example.org/raw/main/docs/reports/mlpnet/accuracy_paper_oneshot_mlpnet_mlpnet_mnist.png)"
    )
    assert linked in readme.read_text()
    readme.write_text("no markers\n")
    with pytest.raises(UserError, match="no <!-- report:NAME -->"):
        update_markdown(readme, report)


def test_ablation_folder_gets_curves_against_the_swept_key(tmp_path):
    for job, (iterations, acc, objective) in enumerate([(0, 90.0, 80.0), (10, 91.0, 60.0), (100, 92.0, 55.0)]):
        write_run(
            tmp_path / str(job),
            pruner_settings("chita") | {"iterations": iterations},
            0.9,
            0,
            acc,
            ablation={"pruner.iterations": iterations, "pruner.init": "magnitude"},
            experiment="ablation_iht_iterations",
            objective=objective,
        )
    report = build_report(tmp_path, tmp_path / "out")
    text = report.read_text()
    pngs = sorted(p.name for p in report.parent.glob("*.png"))  # a text-valued key only names series
    assert pngs == ["ablation_ablation_iht_iterations_mlpnet_mnist_pruner_iterations.png"]
    assert (report.parent / pngs[0]).stat().st_size > 10_000
    assert "| CHITA | 0.9 | 100 | magnitude | 1 | 92.00 | 0.55 | 4.0 |" in text
    assert (
        "- CHITA, sparsity 0.9, pruner.init=magnitude: pruner.iterations 0 → 100: accuracy 90.00 → 92.00, "
        "objective / n 0.8 → 0.55"
    ) in text


def test_an_ad_hoc_sweep_of_a_pruner_setting_gets_one_column_per_value(tmp_path):
    for job, update in enumerate(["joint", "independent"]):
        write_run(
            tmp_path / str(job),
            {"name": "woodfisher", "update": update, "gradients": {"n_samples": 100}},
            0.9,
            0,
            90.0 + job,
            experiment=None,
        )
    text = build_report(tmp_path).read_text()
    assert "| sparsity | WoodFisher [update=independent] | WoodFisher [update=joint] |" in text


def test_runs_that_differ_only_in_where_the_fisher_store_lives_are_one_method(tmp_path):
    for job, folder in enumerate(["/a/fisher", "/b/fisher"]):
        gradients = {"n_samples": 100, "store": job == 0, "store_dir": folder, "store_max_gb": 10.0 + job}
        write_run(tmp_path / str(job), {"name": "woodfisher", "gradients": gradients}, 0.5 + 0.4 * job, 0, 90.0)
    text = build_report(tmp_path).read_text()
    assert "| sparsity | WoodFisher |" in text and "store" not in text


def test_the_same_cell_and_seed_twice_keeps_the_newer_run(tmp_path):
    write_run(tmp_path / "old", pruner_settings("mp"), 0.9, 0, 10.0)
    write_run(tmp_path / "new", pruner_settings("mp"), 0.9, 0, 90.3)
    old = tmp_path / "old" / "results.json"
    stat = old.stat()
    os.utime(old, (stat.st_atime - 100, stat.st_mtime - 100))
    assert "| 0.9 | 90.30 |" in build_report(tmp_path).read_text()


def test_command_line_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, message in ((tmp_path / "missing", "report folder not found"), (empty, "no results.json under")):
        done = run_module("chitalab.report.__main__", str(folder))
        assert done.returncode == 2 and done.stderr.strip().startswith(f"error: {message}"), done.stderr
        assert "Traceback" not in done.stderr
    assert not (empty / "report").exists()


def test_an_existing_folder_that_is_not_a_report_is_never_replaced(table_folder, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="exists and is not an earlier report"):
        build_report(table_folder, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    first = build_report(table_folder, tmp_path / "report")
    (first.parent / "stage_count.txt").write_text("a note beside the report")
    (first.parent / "stale.png").write_text("not written by this report")
    assert build_report(table_folder, tmp_path / "report") == first  # an earlier report is replaced
    assert (first.parent / "stage_count.txt").read_text() == "a note beside the report"  # its notes kept
    assert not (first.parent / "stale.png").exists()
