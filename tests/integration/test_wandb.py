"""W&B offline runs, read back from their run files: the config from the start, live stage and
pruning-step series, the model artifact, one unit per metric, and a preset's jobs in one group."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import SWAPS_NOT_SECONDS, SYNTHETIC, run_cli, wandb_records

TESTS = Path(__file__).resolve().parents[1]


def offline_run(run_dir: Path) -> dict:
    """The parts of `run_dir`'s offline W&B run a test checks, in the order they were written."""
    records = wandb_records(next(run_dir.glob("wandb/offline-run-*/run-*.wandb")))
    kinds = [r.WhichOneof("record_type") for r in records]
    run = next(r.run for r in records if r.HasField("run"))
    history = [
        {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    artifacts = [r.artifact for r in records if r.HasField("artifact")]
    return {
        "kinds": kinds,
        "config": [u.key for r in records if r.HasField("config") for u in r.config.update],
        "name": run.display_name,
        "group": run.run_group,
        "job_type": run.job_type,
        "history": history,
        "artifacts": artifacts,
    }


def rows_with(history: list[dict], key: str) -> list[dict]:
    return [row for row in history if key in row]


def check_common(run: dict) -> None:
    """The config before the first metric, the model artifact, the final accuracies once in percent."""
    assert run["kinds"].index("config") < run["kinds"].index("history")
    assert {"model", "dataset", "pruner", "sparsity"} <= set(run["config"])
    (artifact,) = run["artifacts"]
    metadata = json.loads(artifact.metadata)
    assert artifact.type == "model" and {"method", "sparsity", "model", "pruned_test_acc"} <= set(metadata)
    for key in ("dense/test_acc", "pruned/test_acc"):
        (row,) = rows_with(run["history"], key)
        assert 1 < row[key] <= 100, f"{key}={row[key]} is not a percentage"
    keys = {key for row in run["history"] for key in row}
    assert not {"dense/acc", "pruned/acc"} & keys


def test_a_one_shot_chitapp_run_logs_each_stage_as_it_ends(tmp_path):
    done = run_cli(*SYNTHETIC, "pruner=chitapp", "pruner.num_stages=3", "logger=wandb", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    run = offline_run(tmp_path)
    check_common(run)
    assert run["name"] == "dataset=synthetic,model=tiny_mlp,pruner.num_stages=3,pruner=chitapp"
    assert run["job_type"] == "oneshot" and run["group"] == ""
    live = rows_with(run["history"], "stage/test_acc")
    assert [row["trainer/global_step"] for row in live] == [0, 1, 2]
    final = run["history"].index(rows_with(run["history"], "pruned/test_acc")[0])
    assert all(run["history"].index(row) < final for row in live)  # logged during the run, not after it
    assert len(rows_with(run["history"], "stage/objective")) == 3
    assert all(len(rows_with(run["history"], key)) == 3 for key in ("stage/test_acc", "stage/measured_sparsity"))
    assert "wandb: " not in done.stdout + done.stderr and "litlogger" not in done.stdout + done.stderr


def test_a_gradual_run_logs_its_pruning_steps_during_training(tmp_path):
    done = run_cli(
        *SYNTHETIC,
        *SWAPS_NOT_SECONDS,  # what is tested is the logging, not how far the search gets
        "schedule=gradual_fast",
        "schedule.epochs=4",
        "schedule.prune_every=1",
        "schedule.nprune_epochs=2",
        "logger=wandb",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    run = offline_run(tmp_path)
    check_common(run)
    assert run["job_type"] == "gradual_fast"
    steps = rows_with(run["history"], "prune/measured_sparsity")
    assert [row["prune/step"] for row in steps] == [0, 1]
    assert rows_with(run["history"], "train/acc")[-1] is not None
    noise = ("wandb: ", "litlogger", "GPU available", "weights_only", "LeafSpec")
    assert not [n for n in noise if n in done.stdout + done.stderr]


def test_the_jobs_of_a_preset_share_one_group(tmp_path):
    done = run_cli(
        f"hydra.searchpath=[file://{TESTS / 'conf'}]",
        "experiment=tiny_preset",
        "logger=wandb",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    runs = [offline_run(job) for job in sorted(tmp_path.glob("[0-9]"))]
    assert len(runs) == 2 and {run["group"] for run in runs} == {"tiny_preset"}
    assert sorted(run["name"] for run in runs) == ["pruner=mp,sparsity=0.5", "pruner=mp,sparsity=0.9"]
