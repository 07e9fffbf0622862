"""Unit checks behind issue 12: safe checkpoint reading, downloads, atomic writes, the resume
settings check, the epoch-seeded shuffle, failed W&B runs and the folder lock."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest
import torch

from chitalab.data.base import EpochShuffle
from chitalab.errors import UserError
from chitalab.models import MLPNet, checkpoint
from chitalab.models.safe_load import PINNED_SHA256, read_checkpoint, sha256
from chitalab.outputs import save_outputs
from chitalab.run import loggers
from chitalab.run.lock import folder_in_use, run_lock
from chitalab.run.resume import mismatches
from tests.support import MLPNET_CHECKPOINT, RESNET20_CHECKPOINT

PAPER_URL = "https://github.com/mazumder-lab/CHITA/raw/main/checkpoints/mnist_25_epoch_93.97.ckpt"


@pytest.mark.skipif(not MLPNET_CHECKPOINT.is_file(), reason="the MLPNet checkpoint is absent")
def test_the_paper_mlpnet_checkpoint_reads_without_unpickling_code():
    assert sha256(MLPNET_CHECKPOINT) == PINNED_SHA256[MLPNET_CHECKPOINT.name]
    obj = read_checkpoint(MLPNET_CHECKPOINT)  # weights_only=True, its class names mapped to a placeholder
    model = MLPNet()
    checkpoint.load_checkpoint(model, MLPNET_CHECKPOINT)
    assert isinstance(obj, dict) and torch.isfinite(model.fc1.weight).all()


@pytest.mark.skipif(not RESNET20_CHECKPOINT.is_file(), reason="the ResNet20 checkpoint is absent")
def test_the_resnet20_checkpoint_has_its_pinned_hash():
    assert sha256(RESNET20_CHECKPOINT) == PINNED_SHA256[RESNET20_CHECKPOINT.name]


def test_a_pickle_with_a_payload_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Payload()}, f, protocol=2)
    with pytest.raises(UserError, match="could run code"):
        read_checkpoint(path)
    assert not marker.exists()


def test_downloads_only_for_the_default_file_name(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, path):
        calls.append(path)
        path.write_bytes(b"")

    monkeypatch.setattr(checkpoint, "download", fake_download)
    with pytest.raises(UserError, match="checkpoint file not found"):
        checkpoint.load_checkpoint(MLPNet(), tmp_path / "typo" / "mine.ckpt", PAPER_URL)
    assert calls == [] and not (tmp_path / "typo").exists()
    with pytest.raises(UserError, match="the file is empty"):  # the stub download writes an empty file
        checkpoint.load_checkpoint(MLPNet(), tmp_path / "mnist_25_epoch_93.97.ckpt", PAPER_URL)
    assert calls == [tmp_path / "mnist_25_epoch_93.97.ckpt"]


def test_a_download_with_the_wrong_hash_is_discarded(tmp_path):
    served = tmp_path / "served.ckpt"
    served.write_bytes(b"not the checkpoint")
    target = tmp_path / "mnist_25_epoch_93.97.ckpt"
    with pytest.raises(UserError, match="pinned SHA-256"):
        checkpoint.download(served.as_uri(), target)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["served.ckpt"]


def test_a_download_with_the_pinned_hash_is_kept(tmp_path):
    served = MLPNET_CHECKPOINT
    if not served.is_file():
        pytest.skip(f"the MLPNet checkpoint ({served}) is absent")
    target = tmp_path / served.name
    checkpoint.download(served.as_uri(), target)
    assert target.read_bytes() == served.read_bytes()


def test_a_full_disk_leaves_no_part_file_and_names_the_file(tmp_path, monkeypatch):
    def full(obj, target):
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(b"half")
        else:
            target.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="cannot write .*pruned.pt: No space left on device"):
        save_outputs(tmp_path, {"w": torch.zeros(1)}, "{}")
    assert list(tmp_path.iterdir()) == []


def test_resume_mismatches_name_each_key():
    saved = {"sparsity": 0.9, "pruner.l2": 1e-4, "schedule.epochs": 12}
    now = {"sparsity": 0.95, "pruner.l2": 1e-4, "schedule.epochs": 12, "pruner.extra": 1}
    assert mismatches(saved, now) == ["pruner.extra (checkpoint unset, now 1)", "sparsity (checkpoint 0.9, now 0.95)"]


def test_epoch_shuffle_depends_only_on_seed_and_epoch():
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    torch.manual_seed(123)  # the global random state does not matter
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)


def test_a_failed_job_marks_its_wandb_run_failed(monkeypatch):
    finished = []

    from lightning.pytorch.loggers import WandbLogger

    class FakeWandb(WandbLogger):
        def __init__(self):
            self._experiment = self

        @property
        def experiment(self):
            return self

        def finalize(self, status):
            finished.append(status)

        def finish(self, exit_code=0):
            finished.append(exit_code)

    loggers.mark_failed(FakeWandb())
    assert finished == ["failed", 1]


def test_the_folder_lock_is_held_while_a_job_runs(tmp_path):
    assert not folder_in_use(tmp_path)
    with run_lock(tmp_path):
        assert folder_in_use(tmp_path)
        with pytest.raises(UserError, match="in use by another running job"):
            with run_lock(tmp_path):
                pass
    assert not folder_in_use(tmp_path)


def test_a_read_only_output_location_is_one_line_before_hydra_writes(tmp_path, monkeypatch):
    from chitalab import cli

    target = tmp_path / "ro" / "run"
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != tmp_path / "ro")  # as if chmod 555
    message = cli.check_output_dir([f"hydra.run.dir={target}"])
    assert (
        message
        == f"cannot write the run folder {target}: {tmp_path / 'ro'} is not writable; set hydra.run.dir=<a writable folder>"
    )
    assert cli.check_output_dir([f"hydra.run.dir={tmp_path / 'ok'}"]) is None


def test_unknown_keys_get_the_closest_key_of_their_group():
    from omegaconf import OmegaConf

    from chitalab.cli import unknown_key_message

    cfg = OmegaConf.create({"pruner": {"l2": 1e-4, "solver": {"iterations": 100, "tol": 1e-7}}, "seed": 0})
    assert unknown_key_message("pruner.iteratons", cfg).startswith(
        "pruner.iteratons is not a config key; did you mean pruner.solver.iterations?"
    )


UNREADABLE = {
    "empty": (b"", "the file is empty"),
    "text": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
        "not a torch checkpoint (it starts with text",
    ),
    "binary": (b"\x00\x01\x02\x03garbage", "not a torch checkpoint (it starts with unknown binary data"),
}


@pytest.mark.parametrize("kind", [*sorted(UNREADABLE), "truncated"])
def test_unreadable_checkpoint_files_are_refused_with_a_reason(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "truncated":
        torch.save(MLPNet(64, [16, 8], 4).state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        expected = "truncated"
    else:
        content, expected = UNREADABLE[kind]
        path.write_bytes(content)
    with pytest.raises(UserError, match="cannot read checkpoint") as info:
        checkpoint.load_checkpoint(MLPNet(64, [16, 8], 4), path)
    assert expected in str(info.value) and "\n" not in str(info.value)


BAD_VALUES = {
    "seed_negative": (["seed=-1"], "seed=-1 is not allowed"),
    "l2_text": (["pruner.l2=abc"], "pruner.l2='abc' is not allowed"),
    "l2_inf": (["pruner.l2=inf"], "pruner.l2=inf is not allowed"),
    "memory_text": (["pruner.gradients.max_memory_gb=abc"], "pruner.gradients.max_memory_gb='abc' is not allowed"),
    "tol_nan": (["pruner/solver=iht", "pruner.solver.tol=nan"], "pruner.solver.tol=nan is not allowed"),
    "swap_budget_zero": (["pruner.solver.time_budget_s=0"], "pruner.solver.time_budget_s=0 is not allowed"),
    "l2_grid_negative": (["pruner.l2=[1e-4,-1]"], "pruner.l2=-1 is not allowed"),
    "step_sizes_inf": (
        ["pruner=chitapp", "pruner.stage_pruner.step_search.sizes=[inf]"],
        "pruner.stage_pruner.step_search.sizes=[inf] is not allowed",
    ),
    "lr_negative": (["schedule=gradual_fast", "schedule.optimizer.lr=-1"], "schedule.optimizer.lr=-1 is not allowed"),
    "momentum_nan": (["schedule=gradual", "schedule.optimizer.momentum=nan"], "schedule.optimizer.momentum=nan"),
    "adamw_betas": (
        ["schedule=gradual", "optim@schedule.optimizer=adamw", "+schedule.optimizer.betas=[0.9,1.5]"],
        "schedule.optimizer.betas=[0.9, 1.5] is not allowed",
    ),
    "ckpt_path_missing": (
        ["schedule=gradual_fast", "ckpt_path=/nonexistent/last.ckpt"],
        "ckpt_path=/nonexistent/last.ckpt: file not found",
    ),
    "ckpt_path_oneshot": (
        ["ckpt_path=/nonexistent/last.ckpt"],
        "ckpt_path=/nonexistent/last.ckpt resumes a gradual run",
    ),
    "typo_key_appended": (["+pruner.iteratons=5"], "pruner: unexpected argument 'iteratons'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_found_by_the_checks_that_run_before_any_long_work(case):
    """`check_values` is what the CLI (read_job) and every multirun job run first."""
    from hydra import compose, initialize_config_dir

    from chitalab.cli import find_user_error
    from chitalab.run.config import check_values
    from tests.support import CONF

    overrides, expected = BAD_VALUES[case]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_mlp", "dataset=synthetic", *overrides])
    with pytest.raises(Exception) as info:
        check_values(cfg)
    user_error = find_user_error(info.value)
    assert user_error is not None and expected in str(user_error), info.value


def test_a_typo_key_is_one_line_with_the_closest_key():
    from chitalab.cli import check_composition
    from tests.support import CONF

    message = check_composition(["model=tiny_mlp", "pruner/solver=iht", "pruner.iteratons=5"], CONF)
    assert message is not None and message.startswith(
        "pruner.iteratons is not a config key; did you mean pruner.solver.iterations?"
    )
    assert check_composition(["model=tiny_mlp", "pruner/solver=iht", "pruner.solver.iterations=5"], CONF) is None
