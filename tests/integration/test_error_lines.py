"""Errors raised by libraries (Hydra's instantiate, a class's argument check) and by the job are
one line naming the key that caused them, exit 2; a bug in the suite is a traceback and a line
saying so, exit 1."""

from __future__ import annotations

import json

import pytest

from tests.support import REPO, SYNTHETIC, run_cli

CASES = {
    "target_not_importable": (
        ["pattern._target_=my.module.Constraint"],
        "pattern._target_=my.module.Constraint cannot be imported (No module named 'my'); give a class importable "
        "from this Python (a module on PYTHONPATH, or a config folder on hydra.searchpath whose class is installed)",
    ),
    "library_value_error": (
        ["model=resnet20", "dataset=synthetic", "model.checkpoint=null", "model.net.depth=10"],
        "model.net: depth must be 6n + 2 with n >= 1, got 10",
    ),
    "ridge_choice_samples": (  # issue 24: the ridge choice's samples, not pruner.gradients.n_samples
        ["dataset.datamodule.num_train=100", "pruner.gradients.n_samples=64"],
        "the pruner needs 2000 training samples at once but the training set has 100; "
        "lower pruner.ridge_choice.samples (2000) to at most 100",
    ),
    "chitapp_samples": (  # issue 28: CHITA++'s keys sit under pruner.stage_pruner
        ["pruner=chitapp", "dataset.datamodule.num_train=500"],
        "the pruner needs 2000 training samples at once but the training set has 500; "
        "lower pruner.stage_pruner.gradients.n_samples (1000) and pruner.stage_pruner.step_search.samples (2000) "
        "to at most 500",
    ),
    "mini_batches": (
        ["pruner=woodfisher", "pruner.gradients.n_samples=100", "pruner.gradients.mini_bsz=30"],
        "the pruner needs 3000 training samples at once but the training set has 2000; "
        "lower pruner.gradients.n_samples x pruner.gradients.mini_bsz (3000) to at most 2000",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_library_or_job_error_is_one_line_naming_the_key(tmp_path, case):
    overrides, expected = CASES[case]
    done = run_cli(*SYNTHETIC, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {expected}"]


def test_a_bug_in_the_suite_is_a_traceback_and_a_line_saying_so(tmp_path):
    done = run_cli(
        *SYNTHETIC,
        f"hydra.searchpath=[file://{REPO / 'tests' / 'conf'}]",
        "pruner/solver=broken",
        "pruner.l2=1e-3",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "IndexError: list index out of range" in lines
    assert lines[-1] == (
        "error: this is a bug in chitalab, not a problem with your input: please report it with the traceback "
        "above and the command line"
    )
    assert "IndexError" in (tmp_path / "run" / "chitalab.log").read_text()  # the log keeps the details


@pytest.mark.parametrize("include", ["fc1.weight", "fc1*"])
def test_a_single_include_string_is_one_pattern(tmp_path, include):
    out = tmp_path / "run"
    done = run_cli(
        *SYNTHETIC, "pruner=mp", "deploy.latency=false", f"model.prune.include={include}", f"hydra.run.dir={out}"
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["num_pruned_weights"] == 64 * 16  # fc1 of tiny_mlp only, not every layer
