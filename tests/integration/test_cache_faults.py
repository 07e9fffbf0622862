"""The caches are optional, never fatal: a cache folder that cannot be created, is read-only or
full is one warning per cache (naming the folder and the switch), the job finishes, and its
results are those of a run with the caches off."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.support import SYNTHETIC, run_cli

FAST = ("pruner/solver=backsolve", "pruner.l2=1e-3", "deploy.latency=false")


def run(tmp_path: Path, name: str, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / name
    done = run_cli(*SYNTHETIC, *FAST, f"hydra.run.dir={out}", *overrides)
    assert done.returncode == 0, done.stderr
    return done, json.loads((out / "results.json").read_text())


def warnings(done: subprocess.CompletedProcess) -> list[str]:
    lines = (done.stdout + done.stderr).splitlines()  # the log goes to stdout, errors to stderr
    return [line.split("[WARNING] - ", 1)[1] for line in lines if "[WARNING] - " in line]


def cache_warnings(cache: Path, reason: str) -> list[str]:
    return [
        f"dense baseline cache: cannot use {cache / 'dense'} ({reason}); going on without it "
        "(cache.dense=false turns it off)",
        f"Fisher store: cannot use {cache / 'fisher'} ({reason}); going on without it "
        "(cache.fisher=false turns it off)",
    ]


@pytest.fixture(scope="module")
def caches_off(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("off"), "off", "cache.fisher=false", "cache.dense=false")[1]


def same_results(results: dict, reference: dict) -> None:
    for key in ("dense", "pruned"):
        assert results[key]["test_acc"] == reference[key]["test_acc"]
        assert results[key]["test_loss"] == reference[key]["test_loss"]
    assert results["solver"]["objective"] == reference["solver"]["objective"]
    assert (results["solver"]["fisher_store"], results["dense"]["cached"]) == ("off", False)


def test_a_cache_folder_that_cannot_be_created_is_one_warning_per_cache(tmp_path, caches_off):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"
    done, results = run(tmp_path, "run", f"paths.cache_dir={cache}")
    found = [w for w in warnings(done) if "cache" in w or "store" in w]
    assert found == cache_warnings(cache, "Not a directory")
    same_results(results, caches_off)


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A small tmpfs mounted at `folder` (skips the test where mounting is not permitted)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the fake above stands in")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_cache_filesystem_is_one_warning_per_cache(tmp_path, caches_off):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as cache:
        done, results = run(tmp_path, "run", f"paths.cache_dir={cache}")
    found = [w for w in warnings(done) if "cache" in w or "store" in w]
    assert found == cache_warnings(cache, "Read-only file system")
    same_results(results, caches_off)


def test_a_full_cache_filesystem_is_one_warning_per_cache_and_leaves_no_partial_file(tmp_path, caches_off):
    with tmpfs(tmp_path / "full", "size=64k") as cache:
        with contextlib.suppress(OSError), open(cache / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        done, results = run(tmp_path, "run", f"paths.cache_dir={cache}")
        left = sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name != "filler")
    found = [w for w in warnings(done) if "cache" in w or "store" in w]
    assert found == cache_warnings(cache, "No space left on device")
    assert left == [], "a half-written cache entry stayed behind"
    same_results(results, caches_off)
