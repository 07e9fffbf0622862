"""Smoke test of the benchmark command (tiny sizes; no timings are asserted), run in this process."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from chitalab.models import MLPNet, resnet20
from tests.support import DATA_DIR, needs_cifar10, needs_mnist, run_module


def run_benchmarks(*args: str) -> subprocess.CompletedProcess:
    return run_module("benchmarks.run", *args)


def test_quick_run_prints_tables_and_writes_json(tmp_path):
    done = run_benchmarks("--quick", "--sections", "floor,scaling_p,block", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "fitted exponent of seconds in p" in done.stdout and "Block backsolve" in done.stdout
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["machine"]["threads"] >= 1 and report["quick"] is True
    assert set(report["sections"]) == {"floor", "scaling_p", "block"}
    assert all(
        row["floor_seconds"] > 0 and row["per_iteration_over_floor"] > 0 for row in report["sections"]["floor"]["rows"]
    )
    assert set(report["sections"]["scaling_p"]["exponents"]) >= {"iht", "active_set", "backsolve", "block", "floor"}
    assert report["sections"]["block"]["groups"] >= 1


def test_bad_options_are_refused_in_one_line(tmp_path):
    done = run_benchmarks("--sections", "floor,warp", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --sections got 'floor,warp'; allowed: fisher, solvers, floor, scaling_p, scaling_n, block, deploy, swap, job, sweep (comma-separated)"
    ]
    done = run_benchmarks("--device", "tpu", "--out", str(tmp_path))
    assert done.returncode == 2 and "--device got 'tpu'" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_quick_deploy_section_times_three_models_and_the_layer_sweeps(tmp_path):
    done = run_benchmarks("--quick", "--sections", "deploy", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Deploy: end-to-end CPU latency" in done.stdout and "break-even linear" in done.stdout
    deploy = json.loads((tmp_path / "latest.json").read_text())["sections"]["deploy"]
    assert deploy["threads"] == 1
    assert {row["model"] for row in deploy["rows"]} == {"mlpnet", "resnet20", "wide_mlp_3x256"}
    assert all(row["dense_ms"] > 0 and row["sparse_ms"] > 0 and 0 < row["size_ratio"] < 1 for row in deploy["rows"])
    assert {s["kind"] for s in deploy["sweeps"]} == {"linear", "conv"}


def test_quick_job_section_times_the_phases_of_a_cold_job(tmp_path):
    done = run_benchmarks("--quick", "--sections", "job", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "One cold one-shot job, tiny_mlp" in done.stdout
    job = json.loads((tmp_path / "latest.json").read_text())["sections"]["job"]["tiny_mlp"]
    phases = [row["phase"] for row in job["rows"]]
    assert phases[:8] == [
        "start-up",
        "data",
        "re-estimation",
        "dense evaluation",
        "Fisher",
        "solve",
        "pruned evaluation",
        "writing",
    ]
    assert all(row["seconds"] >= 0 for row in job["rows"]) and job["wall_seconds"] > 0


def test_quick_sweep_section_compares_the_caches_on_and_off(tmp_path):
    """Both sweeps must agree at any load: the quick sweep gives the swap search a budget in swaps,
    not seconds (benchmarks.sweep_bench.QUICK_SWEEP), so both do the same work."""
    done = run_benchmarks("--quick", "--sections", "sweep", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    sweep = json.loads((tmp_path / "latest.json").read_text())["sections"]["sweep"]
    assert all("pruner.solver.time_budget_s=null" in sweep[caches]["command"] for caches in ("on", "off"))
    assert sweep["fisher_hits"] == sweep["dense_hits"] == len(sweep["sparsities"]) - 1
    assert sweep["identical_results"] is True
    assert [j["fisher_store"] for j in sweep["off"]["jobs"]] == ["off"] * len(sweep["sparsities"])


def training_set_rows(tmp_path, runs: list[tuple[str, torch.nn.Module, float]]) -> list[list[str]]:
    """Write one run folder per (model name, network, sparsity), run the benchmark over them,
    and return its table rows split into cells."""
    for i, (model, net, sparsity) in enumerate(runs):
        run = tmp_path / "sweep" / str(i)
        run.mkdir(parents=True)
        torch.save(net.state_dict(), run / "pruned.pt")
        results = {"model": model, "method": "MP", "pruner": {}, "sparsity": {"requested": sparsity}}
        (run / "results.json").write_text(json.dumps({**results, "seed": 0, "pruned": {"test_acc": 10.0}}))
    done = run_module(
        "benchmarks.training_set_metrics", str(tmp_path), env=dict(os.environ, CHITA_DATA_DIR=str(DATA_DIR))
    )
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines() if line.split()[1:2] == ["MP"]]


@needs_mnist
def test_training_set_metrics_reads_every_mlpnet_run_under_a_folder(tmp_path):
    torch.manual_seed(0)
    rows = training_set_rows(tmp_path, [("mlpnet", MLPNet(), 0.9), ("mlpnet", MLPNet(), 0.5)])
    # model, method, sparsity, seed, train_loss, train_acc, test_acc (the stage column is blank for MP)
    assert [row[2] for row in rows] == ["0.5", "0.9"]
    assert all(float(row[4]) > 0 and 0 < float(row[5]) < 100 for row in rows)  # random weights


@pytest.mark.slow  # a pass over CIFAR-10's 50,000 training images with ResNet20
@needs_cifar10
def test_training_set_metrics_evaluates_a_resnet20_run_on_cifar10(tmp_path):
    torch.manual_seed(0)
    net = resnet20()
    rows = training_set_rows(tmp_path, [("resnet20", net, 0.7)])
    assert [row[:3] for row in rows] == [["resnet20", "MP", "0.7"]]
    assert float(rows[0][4]) > 0 and 0 < float(rows[0][5]) < 100
