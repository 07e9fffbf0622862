"""The caches across jobs: a second job with the same weights and samples reads G and the dense
baseline instead of recomputing them, with results identical to the first; both can be off."""

from __future__ import annotations

import json

from tests.support import SWAPS_NOT_SECONDS, SYNTHETIC, run_cli


def run_job(tmp_path, name: str, *overrides: str) -> dict:
    out = tmp_path / name
    result = run_cli(*SYNTHETIC, f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}", *overrides)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "results.json").read_text())


def test_a_second_job_reads_the_fisher_store_and_the_dense_baseline(tmp_path):
    def pinned(tmp_path, name, *overrides):  # the search's work pinned (equal results at any load), one λ
        return run_job(tmp_path, name, *SWAPS_NOT_SECONDS, "pruner.l2=1e-4", *overrides)

    first = pinned(tmp_path, "first", "sparsity=0.8")
    second = pinned(tmp_path, "second", "sparsity=0.8")
    other_sparsity = pinned(tmp_path, "third", "sparsity=0.5")
    assert (first["solver"]["fisher_store"], first["dense"]["cached"]) == ("miss", False)
    assert (second["solver"]["fisher_store"], second["dense"]["cached"]) == ("hit", True)
    assert (other_sparsity["solver"]["fisher_store"], other_sparsity["dense"]["cached"]) == ("hit", True)
    for key in ("dense", "pruned"):
        assert second[key]["test_acc"] == first[key]["test_acc"]
        assert second[key]["test_loss"] == first[key]["test_loss"]
    assert second["solver"]["objective"] == first["solver"]["objective"]
    off = pinned(tmp_path, "off", "sparsity=0.8", "cache.fisher=false", "cache.dense=false")
    assert (off["solver"]["fisher_store"], off["dense"]["cached"]) == ("off", False)
    assert off["pruned"]["test_acc"] == first["pruned"]["test_acc"]
    other_seed = pinned(tmp_path, "seed", "sparsity=0.8", "seed=1")
    assert (other_seed["solver"]["fisher_store"], other_seed["dense"]["cached"]) == ("miss", False)


def test_only_the_first_chitapp_stage_uses_the_fisher_store(tmp_path):
    run_job(tmp_path, "chitapp", "pruner=chitapp", "pruner.num_stages=3", "pruner.stage_pruner.step_search=null")
    entries = list((tmp_path / "cache" / "fisher").glob("*.fisher"))
    assert len(entries) == 1  # later stages start from weights no other job shares
