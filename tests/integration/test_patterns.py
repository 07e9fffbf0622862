"""Patterns end to end through run.py on synthetic data: the saved weights are read back and
checked group by group, and results.json records the check, per-layer sparsity and MACs."""

from __future__ import annotations

import json

import pytest
import torch

from chitalab.models import MLPNet
from chitalab.outputs import RESULTS_FILE, WEIGHTS_FILE
from chitalab.params import keep_count
from tests.support import SYNTHETIC, run_cli
from tests.support.patterns import is_n_m

PRUNED = ("fc1.weight", "fc2.weight", "fc3.weight")


def saved_weights(folder) -> dict[str, torch.Tensor]:
    model = MLPNet(64, [16, 8], 4)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return {name: param for name, param in model.named_parameters() if name in PRUNED}


@pytest.mark.parametrize(
    ("overrides", "n", "m"),
    [
        (["pruner=woodfisher", "pruner.block_size=64"], 2, 4),
        (["pruner=chita", "pruner/solver=iht", "pattern.n=1", "pattern.m=4"], 1, 4),
        (["schedule=gradual_fast", "schedule.epochs=3", "schedule.prune_every=1", "schedule.nprune_epochs=2"], 2, 8),
    ],
    ids=["woodfisher_2_4", "chita_1_4", "gradual_2_8"],
)
def test_saved_weights_keep_the_n_m_pattern_and_results_record_it(tmp_path, overrides, n, m):
    done = run_cli(*SYNTHETIC, "pattern=nm", f"pattern.m={m}", *overrides, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert "the pattern fixes the sparsity" in done.stdout + done.stderr  # sparsity=0.9, the default, is not used
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    weights = saved_weights(tmp_path)
    assert all(is_n_m(w, n, m) for w in weights.values())
    assert results["pattern"]["name"] == "NM" and (results["pattern"]["n"], results["pattern"]["m"]) == (n, m)
    check = results["pattern_check"]
    assert check["holds"] and check["max_nonzero_per_group"] <= n and check["groups_over_n"] == 0
    assert results["sparsity"]["requested"] == pytest.approx(1 - n / m)  # 64, 16 and 8 inputs: no short groups
    assert results["sparsity"]["measured"] >= results["sparsity"]["requested"] - 1e-12
    layers = {layer["name"]: layer for layer in results["deploy"]["macs"]["layers"]}
    for name, w in weights.items():
        assert layers[name]["sparsity"] == pytest.approx(float((w == 0).float().mean()))
        assert layers[name]["sparse_macs"] == int((w != 0).sum()) * layers[name]["uses_per_weight"]
    macs = results["deploy"]["macs"]
    assert macs["sparse"] == sum(layer["sparse_macs"] for layer in layers.values()) < macs["dense"]


def test_allocated_per_layer_budgets_hold_on_the_saved_weights(tmp_path):
    done = run_cli(
        *SYNTHETIC, "pattern=per_layer", "pattern.mode=allocated", "pruner=chita_block", f"hydra.run.dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    budgets = results["solver"]["bound_pattern"]["budgets"]
    assert sum(budgets) == keep_count(0.9, 1184) == results["pattern_check"]["k"]  # sparsity 0.9, 1184 weights
    counts = [int((w != 0).sum()) for w in saved_weights(tmp_path).values()]
    assert all(c <= b for c, b in zip(counts, budgets)) and results["pattern_check"]["holds"]
    assert results["pattern_check"]["layer_nonzero"] == counts


def test_a_flop_budget_holds_on_the_measured_macs_of_the_saved_model(tmp_path):
    done = run_cli(*SYNTHETIC, "pattern=flops", "pattern.flops_fraction=0.3", "pruner=mp", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    layers = [layer for layer in results["deploy"]["macs"]["layers"] if layer["pruned"]]
    dense, sparse = sum(layer["dense_macs"] for layer in layers), sum(layer["sparse_macs"] for layer in layers)
    check = results["pattern_check"]
    assert check["holds"] and check["macs"] == sparse <= check["macs_budget"] == int(0.3 * dense)
    assert sparse > 0.95 * check["macs_budget"]  # the pattern keeps what the MACs allow
    assert results["pattern"]["macs_per_weight"] == [layer["uses_per_weight"] for layer in layers]
    assert results["sparsity"]["requested"] == 0  # alone, the MAC budget fixes no weight count
