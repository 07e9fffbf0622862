"""The Fisher store: round trips, hits through the gradient source, the key, integrity
(truncated, corrupt, mismatched, killed while writing), eviction."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from chitalab.fisher import GradientSource, collect_gradients
from chitalab.fisher.store import FisherStore, gradient_key
from chitalab.models import MLPNet
from chitalab.params import select_pruned
from tests.support import REPO


def blocks_of(G: torch.Tensor, rows: int):
    return (G[i : i + rows] for i in range(0, G.shape[0], rows))


@pytest.mark.parametrize("rows", [4, 10])
def test_an_entry_reads_back_whole_and_by_column_groups(tmp_path, rows):
    G = torch.randn(10, 37)
    store = FisherStore(tmp_path)
    stored = store.write("k", 10, 37, torch.float32, blocks_of(G, rows))
    whole = stored.read(0, 37)
    assert whole.stride() == (1, 10)  # column-major, as the solvers want it
    torch.testing.assert_close(whole, G, rtol=0, atol=0)
    torch.testing.assert_close(stored.read(5, 21), G[:, 5:21], rtol=0, atol=0)
    assert store.open("k", 10, 37, torch.float32) is not None
    torch.testing.assert_close(store.load("k", 10, 37, torch.float32), G, rtol=0, atol=0)
    assert list(tmp_path.iterdir()) == [store.path("k")]


def make_mlp():
    torch.manual_seed(0)
    model = MLPNet(64, [16, 8], 4).eval()
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 4, (12,))
    return model, select_pruned(model), x, y


def test_the_gradient_source_misses_then_hits_with_the_same_G(tmp_path):
    model, pruned, x, y = make_mlp()
    expected = collect_gradients(model, pruned, F.nll_loss, x, y, chunk_size=5, progress=False)
    source = GradientSource(n_samples=12, chunk_size=5, store=True, store_dir=str(tmp_path))
    first = source.prepare(model, pruned, F.nll_loss, x, y, progress=False)
    G = first.whole()
    assert first.store_status == "miss"
    torch.testing.assert_close(G, expected, rtol=0, atol=0)
    second = source.prepare(model, pruned, F.nll_loss, x, y, progress=False)
    torch.testing.assert_close(second.columns(100, 700), expected[:, 100:700], rtol=0, atol=0)
    assert second.summary()["fisher_store"] == "hit"
    off = GradientSource(n_samples=12).prepare(model, pruned, F.nll_loss, x, y, progress=False)
    off.whole()
    assert off.store_status == "off"


def test_the_key_changes_with_the_weights_the_samples_and_the_settings():
    model, pruned, x, y = make_mlp()
    settings = {"mini_bsz": 1, "dtype": "float32", "method": "auto"}
    key = gradient_key(model, pruned, F.nll_loss, x, y, settings)
    assert gradient_key(model, pruned, F.nll_loss, x, y, dict(settings)) == key
    assert gradient_key(model, pruned, F.nll_loss, x[:-1], y[:-1], settings) != key
    assert gradient_key(model, pruned, F.nll_loss, x, y, {**settings, "mini_bsz": 2}) != key
    assert gradient_key(model, pruned, F.cross_entropy, x, y, settings) != key
    with torch.no_grad():
        pruned.params[0][0, 0] += 1
    assert gradient_key(model, pruned, F.nll_loss, x, y, settings) != key


def damage_truncate(path):
    os.truncate(path, path.stat().st_size - 4)


def damage_flip_a_byte(path):
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size - 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip_a_byte])
@pytest.mark.parametrize("reader", ["open", "load"])  # checked by a streaming pass, or while read whole
@pytest.mark.parametrize("rows", [4, 6])  # two blocks, or one read in place
def test_a_damaged_entry_is_removed_with_a_warning(tmp_path, damage, reader, rows, caplog):
    store = FisherStore(tmp_path)
    store.write("k", 6, 5, torch.float32, blocks_of(torch.randn(6, 5), rows))
    damage(store.path("k"))
    with caplog.at_level(logging.WARNING):
        assert getattr(store, reader)("k", 6, 5, torch.float32) is None
    assert "unusable" in caplog.text and not store.path("k").exists()


def test_an_entry_under_the_wrong_name_or_shape_is_refused(tmp_path, caplog):
    store = FisherStore(tmp_path)
    store.write("k", 6, 5, torch.float32, blocks_of(torch.randn(6, 5), 4))
    store.path("k").rename(store.path("other"))
    with caplog.at_level(logging.WARNING):
        assert store.open("other", 6, 5, torch.float32) is None
    assert "does not match" in caplog.text


def test_failed_writes_leave_nothing(tmp_path):
    def failing():
        yield torch.randn(4, 5)
        raise RuntimeError("gradients not finite")

    store = FisherStore(tmp_path)
    with pytest.raises(RuntimeError):
        store.write("k", 6, 5, torch.float32, failing())
    with pytest.raises(ValueError, match="rows written"):
        store.write("k", 6, 5, torch.float32, blocks_of(torch.randn(4, 5), 4))
    assert list(tmp_path.iterdir()) == []


def test_least_recently_used_entries_are_evicted_past_the_cap(tmp_path):
    entry_gb = (4096 + 100 * 100 * 4) / 2**30
    store = FisherStore(tmp_path, max_gb=2.5 * entry_gb)
    for key in "abc":
        store.write(key, 100, 100, torch.float32, blocks_of(torch.randn(100, 100), 50))
        time.sleep(0.02)
    assert sorted(p.stem for p in tmp_path.iterdir()) == ["b", "c"]
    store.open("b", 100, 100, torch.float32)  # b is now the most recently used
    time.sleep(0.02)
    store.write("d", 100, 100, torch.float32, blocks_of(torch.randn(100, 100), 50))
    assert sorted(p.stem for p in tmp_path.iterdir()) == ["b", "d"]


WRITER = """
import sys, time, torch
from chitalab.fisher.store import FisherStore
def blocks():
    yield torch.ones(4, 5)
    print("writing", flush=True)
    time.sleep(60)
    yield torch.ones(2, 5)
FisherStore(sys.argv[1]).write("k", 6, 5, torch.float32, blocks())
"""


def test_a_job_killed_while_writing_leaves_no_entry_and_the_rerun_is_correct(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        assert [p.suffix for p in tmp_path.iterdir()] == [".tmp"]
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    store = FisherStore(tmp_path)
    assert store.open("k", 6, 5, torch.float32) is None
    G = torch.randn(6, 5)
    torch.testing.assert_close(store.write("k", 6, 5, torch.float32, blocks_of(G, 4)).read(0, 5), G)
    assert list(tmp_path.iterdir()) == [store.path("k")]  # the dead writer's temporary file is gone


def test_column_groups_come_from_one_gradient_pass_through_the_store(tmp_path, monkeypatch):
    import chitalab.fisher.source as source_module

    model, pruned, x, y = make_mlp()
    passes = []
    real = source_module.gradient_chunks
    monkeypatch.setattr(source_module, "gradient_chunks", lambda *a, **k: passes.append(1) or real(*a, **k))
    cuts = [512, 1024, 1184]  # three groups of whole tensors' rows of blocks
    budget_gb = 40_000 / 2**30  # below G's 57 KB: the plan must split it
    for store in (False, True):
        source = GradientSource(n_samples=12, max_memory_gb=budget_gb, store=store, store_dir=str(tmp_path))
        fisher = source.prepare(model, pruned, F.nll_loss, x, y, cuts=cuts, progress=False)
        groups = fisher.plan.groups
        assert len(groups) > 1
        parts = [fisher.columns(a, b) for a, b in groups]
        expected = collect_gradients(model, pruned, F.nll_loss, x, y, progress=False)
        torch.testing.assert_close(torch.cat(parts, dim=1), expected, rtol=1e-5, atol=1e-7)
    assert len(passes) == 1  # the store's single pass; without it, each group is computed on its own
