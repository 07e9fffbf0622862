"""End to end through the command on synthetic data: outputs, multiruns, loggers, bad input. The
command runs in this process (`run_cli`); the real entry point in a fresh process only where the
process itself is what is tested (its exit status)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch

from chitalab.cli import fail
from chitalab.models import MLPNet
from chitalab.outputs import RESULTS_FILE, WEIGHTS_FILE
from chitalab.report import load_runs
from tests.support import SYNTHETIC, run_cli, run_entry_point

RESULT_KEYS = {
    "schema_version",
    "deploy",
    "method",
    "pattern",
    "trajectory",
    "report",
    "model",
    "dataset",
    "schedule",
    "pruner",
    "seed",
    "device",
    "sparsity",
    "num_pruned_weights",
    "num_nonzero",
    "dense",
    "pruned",
    "seconds",
    "peak_memory_mb",
    "solver",
    "provenance",
    "pattern_check",
}


def test_chita_run_writes_results_and_loadable_weights(tmp_path):
    done = run_cli(*SYNTHETIC, "sparsity=0.75", "pruner/solver=iht", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert RESULT_KEYS == set(results)
    assert results["method"] == "CHITA (iht)" and results["pruner"]["solver"]["name"] == "iht"
    assert results["pruner"]["gradients"]["n_samples"] == 1000 and results["pattern"] == {"name": "GlobalTopK"}
    assert results["sparsity"]["requested"] == 0.75
    assert results["sparsity"]["measured"] >= 0.75
    assert set(results["seconds"]) == {"fisher", "solver", "total"}
    deploy = results["deploy"]
    assert deploy["nonzero_pruned_weights"] == results["num_nonzero"]
    assert deploy["checkpoint_bytes"]["sparse"] < deploy["checkpoint_bytes"]["dense"]
    assert set(deploy["latency"]["batches"]) == {"1", "64"}
    assert 0 <= results["pruned"]["test_acc"] <= 100
    model = MLPNet(64, [16, 8], 4)
    model.load_state_dict(torch.load(tmp_path / WEIGHTS_FILE, weights_only=True))
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    assert zeros / results["num_pruned_weights"] == pytest.approx(results["sparsity"]["measured"])


def test_results_carry_their_provenance_and_a_folder_loads_as_a_dataframe(tmp_path):
    checkpoint = tmp_path / "weights.pt"
    torch.save(MLPNet(64, [16, 8], 4).state_dict(), checkpoint)
    run_dir = tmp_path / "runs" / "new"
    done = run_cli(*SYNTHETIC, "pruner=mp", f"model.checkpoint={checkpoint}", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    made = results["provenance"]
    assert results["schema_version"] == 3
    assert made["checkpoint"] == str(checkpoint) and made["pretrained"] is None
    assert made["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert made["data_source"].startswith("synthetic: 2000 + 256 samples")
    assert made["code_version"].startswith("git ") or made["code_version"].startswith("chitalab ")
    assert {"torch", "lightning", "hydra-core", "chitalab", "python"} <= set(made["versions"])
    assert datetime.fromisoformat(made["time_utc"]).utcoffset() == timedelta(0) and made["host"]
    old = {k: v for k, v in results.items() if k != "provenance"} | {"schema_version": 2}
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / RESULTS_FILE).write_text(json.dumps(old))
    frame = load_runs(tmp_path / "runs")
    assert list(frame["run_dir"]) == [str(tmp_path / "runs" / "new"), str(tmp_path / "runs" / "old")]
    assert list(frame["schema_version"]) == [3, 2] and frame["pruned.test_acc"].notna().all()
    assert frame["provenance.checkpoint_sha256"].iloc[0] == made["checkpoint_sha256"]
    assert frame["provenance.checkpoint_sha256"].isna().iloc[1]  # a version-2 file has no provenance


def test_block_method_with_half_storage_and_a_memory_cap_reports_its_plan(tmp_path):
    done = run_cli(
        *SYNTHETIC,
        "pruner=chita_block",
        "pruner.block_size=64",
        "pruner.gradients.dtype=bfloat16",
        "pruner.gradients.max_memory_gb=0.0012",
        "sparsity=0.8",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    assert "Fisher memory plan:" in done.stdout + done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    plan = results["solver"]["memory_plan"]
    assert plan["groups"] > 1 and plan["peak_gib"] <= 0.0012
    assert (
        results["solver"]["blocks"] > 1 and results["solver"]["objective"] <= results["solver"]["objective_magnitude"]
    )
    assert results["sparsity"]["measured"] >= 0.8


def test_timm_model_on_image_shaped_synthetic_data(tmp_path):
    done = run_cli(
        "model=timm",
        "model.name=test_efficientnet",
        "dataset=synthetic",
        "dataset.datamodule.input_shape=[3,32,32]",
        "dataset.datamodule.num_train=64",
        "pruner=chita_block",
        "pruner.gradients.n_samples=32",
        "sparsity=0.5",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert results["model"] == "test_efficientnet" and results["sparsity"]["measured"] >= 0.5


def test_multirun_sweeps_methods_and_sparsities_into_separate_folders(tmp_path):
    done = run_cli("-m", *SYNTHETIC, "pruner=mp,woodfisher,chita", "sparsity=0.5,0.9", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"*/{RESULTS_FILE}"))]
    assert len(runs) == 6
    assert sorted((r["pruner"]["name"], r["sparsity"]["requested"]) for r in runs) == [
        ("chita", 0.5),
        ("chita", 0.9),
        ("mp", 0.5),
        ("mp", 0.9),
        ("woodfisher", 0.5),
        ("woodfisher", 0.9),
    ]
    assert all(r["sparsity"]["measured"] >= r["sparsity"]["requested"] - 1e-3 for r in runs)


@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_loggers_write_offline(tmp_path, logger):
    done = run_cli(*SYNTHETIC, "pruner=mp", f"logger={logger}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    if logger == "csv":
        metrics = next(tmp_path.glob("csv/*/metrics.csv")).read_text()
        assert "pruned/test_acc" in metrics and "sparsity/measured" in metrics
    else:
        assert list(tmp_path.glob("wandb/offline-run-*")), "no offline W&B run was written"
        assert (tmp_path / "pruned.sparse").is_file()  # written for the model artifact, which it is
        run_file = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
        assert b"pruned-model" in run_file.read_bytes()


def _bad_checkpoint(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    state = MLPNet(64, [16, 8], 4).state_dict()
    if kind == "mismatch":
        state["fc1.weight"] = torch.zeros(3, 3)
    elif kind == "nan":
        state["fc2.weight"][0, 0] = float("nan")
    elif kind == "huge":  # finite weights whose activations overflow: non-finite gradients
        state = {k: torch.full_like(v, 1e30) for k, v in state.items()}
    torch.save(state, path)
    return str(path)


BAD_INPUTS = {
    "sparsity_one": (["sparsity=1.0"], "sparsity=1.0"),
    "sparsity_negative": (["sparsity=-0.1"], "sparsity=-0.1"),
    "sparsity_text": (["sparsity=half"], "sparsity='half'"),
    "unknown_model": (
        ["model=resnet9000"],
        "unknown model 'resnet9000'; choose one of: mlpnet, mobilenetv1, resnet20, resnet50, timm, tiny_mlp",
    ),
    "unknown_dataset": (
        ["dataset=imagenet21k"],
        "unknown dataset 'imagenet21k'; choose one of: cifar10, imagenet, mnist, synthetic, synthetic_imagenet",
    ),
    "unknown_pruner": (
        ["pruner=chita,obs"],
        "unknown pruner 'obs'; choose one of: chita, chita_block, chitapp, chitapp_block, mp, woodfisher",
    ),
    "unknown_solver": (
        ["pruner/solver=newton"],
        "unknown pruner/solver 'newton'; choose one of: active_set, backsolve, iht, swap",
    ),
    "unknown_pattern": (
        ["pattern=diagonal"],
        "unknown pattern 'diagonal'; choose one of: flops, nm, per_layer, unstructured",
    ),
    "nm_n_above_m": (["pattern=nm", "pattern.n=5"], "pattern.n=5 is not allowed; it must be at most m=4"),
    "nm_m_zero": (["pattern=nm", "pattern.m=0"], "pattern.m=0 is not allowed; it must be an integer >= 1"),
    "flops_fraction": (
        ["pattern=flops", "pattern.flops_fraction=1.5"],
        "pattern.flops_fraction=1.5 is not allowed; it must be in (0, 1]",
    ),
    "per_layer_cap_too_tight": (
        ["pattern=per_layer", "pattern.mode=caps", "pattern.max_layer_sparsity=0.5"],
        "pattern.max_layer_sparsity=0.5 keeps at least 592 weights, more than the 118 the sparsity allows",
    ),
    "solver_iterations": (
        ["pruner/solver=iht", "pruner.solver.iterations=-1"],
        "pruner.solver.iterations=-1 is not allowed; it must be an integer >= 0",
    ),
    "solver_init": (
        ["pruner/solver=active_set", "pruner.solver.init=zero"],
        "pruner.solver.init='zero' is not allowed; choose one of: backsolve, magnitude",
    ),
    "stage_gradients": (
        ["pruner=chitapp", "pruner.stage_pruner.gradients.n_samples=0"],
        "pruner.stage_pruner.gradients.n_samples=0 is not allowed; it must be an integer >= 1",
    ),
    "stage_step_search": (
        ["pruner=chitapp", "pruner.stage_pruner.step_search.sizes=[0]"],
        "pruner.stage_pruner.step_search.sizes=[0] is not allowed",
    ),
    "half_storage_without_blocks": (
        ["pruner.gradients.dtype=bfloat16"],
        "pruner.gradients.dtype=bfloat16 is not available to the chita solvers",
    ),
    "fisher_too_large": (
        ["pruner.gradients.max_memory_gb=1e-5"],
        "GiB may be used (gradients.max_memory_gb; null means half",
    ),
    "block_too_large": (
        ["pruner=chita_block", "pruner.gradients.max_memory_gb=1e-5"],
        "lower the pruner's block_size, lower gradients.n_samples",
    ),
    "too_many_samples": (
        ["pruner.gradients.n_samples=2001"],
        "the pruner needs 2001 training samples at once but the training set has 2000; "
        "lower pruner.gradients.n_samples (2001) to at most 2000",
    ),
    "missing_checkpoint": (
        ["model.checkpoint=/nonexistent/model.ckpt"],
        "checkpoint file not found: /nonexistent/model.ckpt",
    ),
    "mismatched_checkpoint": (["model.checkpoint={mismatch}"], "does not match the model"),
    "nan_weights": (["model.checkpoint={nan}"], "fc2.weight has 1 non-finite values (NaN or inf) in the checkpoint"),
    "nan_gradients": (["model.checkpoint={huge}"], "Fisher gradients contain NaN or inf"),
    "unknown_schedule": (
        ["schedule=sometimes"],
        "unknown schedule 'sometimes'; choose one of: gradual, gradual_fast, gradual_fast_resnet20, oneshot",
    ),
    "pruning_after_training": (
        ["schedule=gradual_fast", "schedule.epochs=4"],
        "the last pruning epoch (8) must come before schedule.epochs=4",
    ),
    "unknown_experiment": (
        ["experiment=paper_table9"],
        "unknown experiment 'paper_table9'; choose one of: ablation_fisher_samples",
    ),
    "woodfisher_update": (
        ["pruner=woodfisher", "pruner.update=newton"],
        "pruner.update='newton' is not allowed; choose one of: joint, independent, none",
    ),
    "woodfisher_no_dampening": (
        ["pruner=woodfisher", "pruner.l2=0"],
        "pruner.l2=0 is not allowed; it must be > 0 (WoodFisher inverts",
    ),
    "schedule_prune_every": (
        ["schedule=gradual_fast", "schedule.prune_every=0"],
        "schedule.prune_every=0 is not allowed; it must be an integer >= 1",
    ),
    "accelerator": (["trainer.accelerator=tpu"], "trainer.accelerator='tpu' is not allowed; choose one of: auto"),
    "stages_zero": (
        ["pruner=chitapp", "pruner.num_stages=0"],
        "pruner.num_stages=0 is not allowed; it must be an integer >= 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_no_results(tmp_path, case):
    overrides, expected = BAD_INPUTS[case]
    checkpoints = {kind: _bad_checkpoint(tmp_path, kind) for kind in ("mismatch", "nan", "huge")}
    overrides = [o.format(**checkpoints) for o in overrides]
    out_dir = tmp_path / "run"
    done = run_cli(*SYNTHETIC, *overrides, f"hydra.run.dir={out_dir}")
    assert done.returncode == 2, done.stdout + done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and expected in last_line, done.stderr
    assert (done.stdout + done.stderr).count(expected) == 1, "the error is shown more than once"
    assert "Traceback" not in done.stderr
    assert not (out_dir / RESULTS_FILE).exists() and not (out_dir / WEIGHTS_FILE).exists()


def test_the_mission_command_without_imagenet_stops_naming_the_root_and_the_synthetic_set(tmp_path):
    """Through the real entry point: its exit status. How fast it stops is measured, not asserted
    (a loaded machine is slower): docs/usage.md."""
    done = run_entry_point("pruner=chita", "sparsity=0.9", "model=resnet50", f"paths.data_dir={tmp_path}")
    assert done.returncode == 2, done.stdout + done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "dataset.datamodule.root" in last_line, done.stderr
    assert "dataset=synthetic_imagenet" in last_line and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["sparsity_one", "unknown_model", "nan_weights"])
def test_the_real_entry_point_exits_as_the_command_run_in_process_does(tmp_path, case):
    """A fresh `python run.py` (which ends with os._exit) and `run_cli` give the same exit status and
    the same last line: a value refused before Hydra starts, a group option, a job's own check."""
    overrides, expected = BAD_INPUTS[case]
    overrides = [o.format(nan=_bad_checkpoint(tmp_path, "nan")) for o in overrides]
    runs = [
        run(*SYNTHETIC, *overrides, f"hydra.run.dir={tmp_path / name}")
        for name, run in (("a", run_cli), ("b", run_entry_point))
    ]
    assert [done.returncode for done in runs] == [2, 2], [done.stderr for done in runs]
    in_process, real = (done.stderr.strip().splitlines()[-1] for done in runs)
    assert expected in real and in_process == real


def test_a_successful_run_through_the_real_entry_point_exits_0_with_its_results(tmp_path):
    done = run_entry_point(*SYNTHETIC, "pruner=mp", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["method"] == "MP"


@pytest.mark.slow
def test_the_mission_command_runs_on_synthetic_imagenet(tmp_path):
    done = run_cli(
        "pruner=chita",
        "sparsity=0.9",
        "model=resnet50",
        "dataset=synthetic_imagenet",
        "pruner.gradients.n_samples=8",  # G of 8 x 25.5M gradients: 0.8 GB
        "dataset.datamodule.num_test=32",
        "deploy.latency=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert (results["model"], results["dataset"], results["num_pruned_weights"]) == (
        "resnet50",
        "synthetic_imagenet",
        25_502_912,
    )
    assert results["sparsity"]["measured"] >= 0.9


def test_error_messages_are_printed_on_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fail("download failed (Tried https://a, got:\n<urlopen error>\n); point paths.data_dir")
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err
        == "error: download failed (Tried https://a, got: <urlopen error> ); point paths.data_dir\n"
    )


def test_a_solver_and_a_pattern_from_outside_src_run_through_hydra(tmp_path):
    """tests/conf on Hydra's search path brings tests/extensions.py's solver and pattern."""
    done = run_cli(
        *SYNTHETIC,
        f"hydra.searchpath=[file://{Path(__file__).resolve().parents[1] / 'conf'}]",
        "pruner/solver=projected_gradient",
        "pattern=per_tensor",
        "sparsity=0.8",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert results["method"] == "CHITA (projected gradient)" and results["pattern"] == {"name": "PerTensorTopK"}
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    weights = [state[f"fc{i}.weight"] for i in (1, 2, 3)]
    total = sum(w.numel() for w in weights)
    k = int(0.2 * total)
    for w in weights:  # each tensor within its share of k
        assert int((w != 0).sum()) <= k * w.numel() // total
