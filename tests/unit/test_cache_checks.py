"""What is cached or written is checked: a dense-baseline entry carries a SHA-256 of its payload
(a flipped bit is a warning and a recompute), a cache folder that cannot be used is one warning,
and a full disk under the run's outputs says so, leaving no partial file."""

from __future__ import annotations

import contextlib
import logging
import struct
import subprocess
from pathlib import Path

import pytest
import torch

from chitalab.errors import UserError
from chitalab.outputs import save_outputs
from chitalab.run.dense_cache import DenseBaseline, DenseCache

BASELINE = DenseBaseline({"bn.running_mean": torch.full((8,), 0.25)}, test_acc=93.97, test_loss=0.2)


def flip_bit(path: Path, pattern: bytes, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(pattern)
    assert at >= 0 and data.count(pattern) == 1, "the value to alter is not in the file exactly once"
    data[at + len(pattern) // 2] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "what,pattern",
    [
        ("the accuracy", struct.pack(">d", 93.97)),  # pickle stores a float as 8 big-endian bytes
        ("a buffer", struct.pack("<f", 0.25) * 8),  # the tensor's little-endian float32 storage
    ],
)
def test_a_flipped_bit_in_a_dense_cache_entry_is_a_warning_and_a_recompute(tmp_path, caplog, what, pattern):
    cache = DenseCache(tmp_path)
    assert cache.save("k", BASELINE)
    assert cache.load("k").test_acc == 93.97
    flip_bit(cache.path("k"), pattern, bit=4)
    with caplog.at_level(logging.WARNING):
        assert cache.load("k") is None, f"an entry with a flipped bit in {what} was trusted"
    assert [r.getMessage() for r in caplog.records] == [
        "dense baseline cache: entry k.pt is unusable (its checksum does not match its contents); removed, recomputing"
    ]
    assert not cache.path("k").exists()


def test_a_cache_folder_that_cannot_be_created_warns_once_and_is_not_tried_again(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = DenseCache(blocker / "dense")
    with caplog.at_level(logging.WARNING):
        assert cache.save("a", BASELINE) is False
        assert cache.save("b", BASELINE) is False
        assert cache.load("a") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"dense baseline cache: cannot use {blocker / 'dense'} (Not a directory); going on without it "
        "(cache.dense=false turns it off)"
    ]


@contextlib.contextmanager
def full_tmpfs(folder: Path):
    """A 64 KiB tmpfs at `folder`, filled up (skips where mounting is not permitted)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_output_disk_says_so_naming_the_folder_and_leaves_no_partial_file(tmp_path):
    with full_tmpfs(tmp_path / "out") as out:
        with pytest.raises(UserError) as info:
            save_outputs(out, {"w": torch.zeros(4096)}, "{}")
        left = sorted(p.name for p in out.iterdir())
    assert str(info.value) == (
        f"cannot write {out / 'pruned.pt'}: No space left on device in {out}; free some space there or "
        "write elsewhere (hydra.run.dir=...)"
    )
    assert left == ["filler"]


def test_a_full_disk_for_the_dense_cache_is_one_warning_and_no_partial_entry(tmp_path, caplog):
    with full_tmpfs(tmp_path / "cache") as folder:
        cache = DenseCache(folder / "dense")
        big = DenseBaseline({"b": torch.zeros(65536)}, 1.0, 1.0)
        with caplog.at_level(logging.WARNING):
            assert cache.save("k", big) is False
        left = sorted(p.name for p in (folder / "dense").iterdir())
    assert [r.getMessage() for r in caplog.records] == [
        f"dense baseline cache: cannot use {folder / 'dense'} (No space left on device); going on without it "
        "(cache.dense=false turns it off)"
    ]
    assert left == []


def test_a_full_disk_for_the_run_folder_is_refused_before_hydra_writes(tmp_path):
    from chitalab.cli import check_output_dir

    with full_tmpfs(tmp_path / "out") as out:
        message = check_output_dir([f"hydra.run.dir={out / 'run'}"])
    assert message == (
        f"cannot write the run folder {out / 'run'}: no space left on device in {out}; "
        "free some space there or set hydra.run.dir=<a folder with space>"
    )
    assert check_output_dir([f"hydra.run.dir={tmp_path / 'elsewhere'}"]) is None
