"""The deploy latency measurement keeps to `deploy.latency_budget_s`: once the budget is spent it
stops after the round it is in, times no more layers alone and skips the remaining batch sizes,
and says so (on ResNet50 it took 226 s against a 2 s budget)."""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from chitalab.export.latency import measure_latency

PAUSE_S = 0.02


class SlowLinear(nn.Linear):
    """A dense layer that takes at least PAUSE_S per call (a stand-in for a big layer on a slow CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(PAUSE_S)
        return super().forward(x)


def test_the_latency_measurement_stays_within_its_budget_and_says_so(caplog):
    torch.manual_seed(0)
    net = nn.Sequential(*[SlowLinear(8, 8) for _ in range(20)])
    names = [f"{i}.weight" for i in range(20)]
    budget = 0.3
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="chitalab.export.latency"):
        out = measure_latency(net, names, torch.randn(2, 8), batch_sizes=(1, 64), repeats=20, budget_s=budget)
    seconds = time.perf_counter() - started
    # at most the call in flight past the deadline: one warm-up and one round of the whole model (3 x 20 pauses)
    assert seconds < budget + 4 * 20 * PAUSE_S + 1.0, f"{seconds:.2f} s for a {budget} s budget"
    assert out["budget"]["skipped_batches"] == [64] and out["budget"]["fewest_rounds"] < 20
    assert "1" in out["batches"] and "64" not in out["batches"]
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages[0] == "deploy latency: dense vs sparse at batch size(s) 1, 64, within 0.3 s (deploy.latency_budget_s)"
    )
    assert messages[-1].startswith("deploy latency: ") and messages[-1].endswith(
        "batch size(s) 64 skipped; raise the budget for steadier figures"
    )


def test_a_budget_that_fits_measures_every_round():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    out = measure_latency(net, ["0.weight", "2.weight"], torch.randn(2, 8), batch_sizes=(1,), repeats=5, budget_s=60)
    assert out["budget"]["fewest_rounds"] == 5 and out["budget"]["skipped_batches"] == []
