"""The report's size and latency figure: read from results.json's deploy block or a
deploy.json beside it; runs without one are left out."""

from __future__ import annotations

import json
from pathlib import Path

from chitalab.report import build_report
from tests.support import write_results


def deploy_block(sparsity: float, latency: bool) -> dict:
    dense = 131_000
    block = {
        "checkpoint_bytes": {
            "dense": dense,
            "sparse": int(dense * (1 - sparsity) * 1.3),
            "ratio": (1 - sparsity) * 1.3,
        },
        "macs": {"dense": 32360, "sparse": int(32360 * (1 - sparsity)), "ratio": 1 - sparsity},
        "latency": None,
    }
    if latency:
        block["latency"] = {
            "threads": 1,
            "batches": {
                b: {"dense_ms": 0.02 * int(b), "fastest_ms": 0.02 * int(b) * (1 - sparsity / 2)} for b in ("1", "64")
            },
        }
    return block


def write_run(folder: Path, sparsity: float, accuracy: float, deploy: dict | None, beside: bool) -> None:
    """MP at `sparsity`; the deploy block in results.json, or beside it in deploy.json."""
    write_results(folder, {"name": "mp"}, "MP", sparsity, 0, accuracy, deploy=None if beside else deploy)
    if deploy is not None and beside:
        (folder / "deploy.json").write_text(json.dumps(deploy))


def test_runs_with_deploy_blocks_get_a_size_and_latency_figure(tmp_path):
    write_run(tmp_path / "runs" / "0", 0.5, 93.9, deploy_block(0.5, latency=True), beside=False)
    write_run(tmp_path / "runs" / "1", 0.9, 90.3, deploy_block(0.9, latency=True), beside=True)
    write_run(tmp_path / "runs" / "2", 0.95, 83.6, deploy_block(0.95, latency=False), beside=False)
    write_run(tmp_path / "runs" / "3", 0.98, 32.3, None, beside=False)  # no deploy block: not in the figure
    report = build_report(tmp_path / "runs")
    text = report.read_text()
    assert "### Size and latency" in text and "Runs with a deploy block (3). Latency with 1 torch thread(s)." in text
    assert (report.parent / "deploy_mlpnet_mnist.png").is_file()
    assert "![MACs and per-layer sparsity](macs_mlpnet_mnist.png)" in text
    assert (report.parent / "macs_mlpnet_mnist.png").is_file()
    rows = [line for line in text.splitlines() if line.startswith("| MP |")]
    assert len(rows) == 3 and "0.02 / 0.015" in rows[0] and rows[2].endswith("|  |  |")


def test_runs_without_deploy_blocks_change_nothing(tmp_path):
    write_run(tmp_path / "runs" / "0", 0.5, 93.9, None, beside=False)
    report = build_report(tmp_path / "runs")
    assert "Size and latency" not in report.read_text()
    assert not list(report.parent.glob("deploy_*.png"))


def test_pattern_runs_are_named_by_their_label_and_plotted_by_macs_and_layer(tmp_path):
    layers = [{"name": f"fc{i}.weight", "pruned": True, "sparsity": s} for i, s in enumerate((0.5, 0.6, 0.4), start=1)]
    block = {**deploy_block(0.5, latency=False), "macs": {**deploy_block(0.5, latency=False)["macs"], "layers": layers}}
    write_results(
        tmp_path / "runs" / "0",
        {"name": "mp"},
        "MP",
        0.5,
        0,
        88.0,
        deploy=block,
        pattern={"name": "NM", "label": "2:4"},
    )
    write_results(tmp_path / "runs" / "1", {"name": "mp"}, "MP", 0.5, 0, 93.9, deploy=block)
    text = build_report(tmp_path / "runs").read_text()
    assert "| sparsity | MP | MP [2:4] |\n|---|---|---|\n| 0.5 | 93.90 | 88.00 |" in text
    assert "MP [2:4] − published" not in text  # a pattern run is not compared with unstructured figures
    assert (tmp_path / "runs" / "report" / "macs_mlpnet_mnist.png").is_file()
