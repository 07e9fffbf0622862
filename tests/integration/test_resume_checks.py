"""A resume trusts nothing unchecked: last.ckpt carries a SHA-256 (in last.ckpt.sha256, written
before the rename, the previous digest kept), a flipped bit is a one-line refusal, and files that
are not a checkpoint get a short message (what is wrong, what to do; torch's text in the log)."""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import pytest
import torch

from chitalab.errors import UserError
from chitalab.run.resume import RESUME_HINT, read_resume_file
from chitalab.training.checkpoint import checksum_file, record_checksum, verify_checksum
from tests.support import SYNTHETIC, run_cli

GRADUAL = (
    *SYNTHETIC,
    "pruner=mp",
    "schedule=gradual_fast",
    "schedule.epochs=3",
    "schedule.prune_every=1",
    "schedule.nprune_epochs=2",
    "deploy.latency=false",
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gradual") / "run"
    done = run_cli(*GRADUAL, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    return out / "checkpoints" / "last.ckpt"


def flip_a_bit_in_the_largest_tensor(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
        start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data = bytearray(path.read_bytes())
    data[start + member.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_last_ckpt_carries_its_checksum_and_an_intact_copy_resumes(finished, tmp_path):
    assert verify_checksum(finished) is True
    assert len(json.loads(checksum_file(finished).read_text())["sha256"]) == 2  # this write's and the previous
    done = run_cli(*GRADUAL, f"ckpt_path={finished}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert done.returncode == 0, done.stderr


def test_a_flipped_bit_in_last_ckpt_is_a_one_line_refusal(finished, tmp_path):
    copy = tmp_path / "last.ckpt"
    copy.write_bytes(finished.read_bytes())
    checksum_file(copy).write_bytes(checksum_file(finished).read_bytes())
    flip_a_bit_in_the_largest_tensor(copy)
    done = run_cli(*GRADUAL, f"ckpt_path={copy}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: ckpt_path={copy} fails its checksum (last.ckpt.sha256): the file changed after the run wrote it; "
        "resume from an intact copy, or start the run again"
    ]
    assert not (tmp_path / "resumed" / "results.json").exists()


def test_a_kill_between_the_checksum_and_the_rename_still_resumes(tmp_path):
    final = tmp_path / "last.ckpt"
    torch.save({"epoch": 1}, final)
    record_checksum(final, final)  # the checkpoint of epoch 1, recorded
    partial = tmp_path / "last.ckpt.part"
    torch.save({"epoch": 2}, partial)
    record_checksum(partial, final)  # epoch 2 recorded, then killed before the rename
    assert verify_checksum(final) is True


def test_a_text_file_as_ckpt_path_is_one_short_line(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("version https://git-lfs.github.com/spec/v1\n")
    done = run_cli(*GRADUAL, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot resume from ckpt_path={path}: a text file (it starts with b'vers'); {RESUME_HINT}"
    ]


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("empty", "the file is empty"),
        ("pickled", "it holds pickled Python objects (argparse.Namespace), which a resume never unpickles"),
        ("truncated", "the file is truncated or not a torch checkpoint"),
    ],
)
def test_unreadable_resume_files_get_a_short_message_and_the_details_go_to_the_log(tmp_path, kind, expected):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled":
        torch.save({"state": argparse.Namespace(a=1)}, path)
    else:
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError) as info:
        read_resume_file(str(path))
    assert str(info.value) == f"cannot resume from ckpt_path={path}: {expected}; {RESUME_HINT}"
    if kind == "pickled":
        assert "weights_only" in (info.value.details or "")  # torch's paragraph, for the log file
