"""BatchNorm re-estimation on a subset drawn from the "batchnorm" stream, the fast evaluation
loop (equal to the Lightning one), and the lean start-up (no heavy import before it is needed)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from chitalab.data import SyntheticDataModule
from chitalab.models import ModelSpec
from chitalab.pruning import DrawKey, SampleStream
from chitalab.run.job import BATCHNORM_DRAW, Job
from chitalab.training.batchnorm import recalibrate_batchnorm
from chitalab.training.inference import evaluate_model
from tests.support import HANG, REPO


class BNNet(nn.Module):
    """A tiny conv net with BatchNorm on 1x8x8 inputs, 4 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 64, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def bn_job(samples: int | None, num_train: int = 300, batch_size: int = 64, seed: int = 0) -> Job:
    torch.manual_seed(0)
    data = SyntheticDataModule(num_train=num_train, num_test=64, batch_size=batch_size)
    data.setup()
    spec = ModelSpec(name="bn", net=BNNet(), bn_recalibration=True, bn_recalibration_samples=samples)
    config = SimpleNamespace(model=spec, datamodule=data, device=torch.device("cpu"), progress=False)
    return Job(config, spec.net, None, None, SampleStream(data, seed), sparsity=0.9)  # type: ignore[arg-type]


def stats(job: Job) -> tuple[torch.Tensor, torch.Tensor]:
    bn = job.net.bn
    return bn.running_mean.clone(), bn.running_var.clone()


def test_subset_reestimation_uses_the_count_drawn_from_the_batchnorm_stream(monkeypatch):
    job = bn_job(samples=100)
    seen = []
    original = job.config.datamodule.training_batches
    monkeypatch.setattr(job.config.datamodule, "training_batches", lambda index: seen.append(index) or original(index))
    monkeypatch.setattr(job.config.datamodule, "train_dataloader", lambda: pytest.fail("no full pass expected"))
    assert job.recalibrate_batchnorm() == 100
    assert BATCHNORM_DRAW == DrawKey("batchnorm") and job.samples.drawn == [BATCHNORM_DRAW]
    (index,) = seen
    torch.testing.assert_close(index, SampleStream(job.config.datamodule, 0).indices(100, DrawKey("batchnorm")))
    assert len(set(index.tolist())) == 100


def test_subset_reestimation_is_reproducible_and_depends_on_the_seed():
    first, again, other = bn_job(100), bn_job(100), bn_job(100, seed=1)
    for job in (first, again, other):
        job.recalibrate_batchnorm()
    torch.testing.assert_close(stats(first), stats(again))
    assert not torch.allclose(stats(first)[0], stats(other)[0])


def test_null_count_makes_the_full_pass(monkeypatch):
    job = bn_job(samples=None)
    monkeypatch.setattr(job.config.datamodule, "training_batches", lambda index: pytest.fail("no subset expected"))
    assert job.recalibrate_batchnorm() == 300
    assert job.samples.drawn == []


def test_no_reestimation_unless_the_model_asks_for_it():
    job = bn_job(samples=100)
    job.config.model = ModelSpec(name="bn", net=job.net, bn_recalibration=False, bn_recalibration_samples=100)
    before = stats(job)
    assert job.recalibrate_batchnorm() is None
    torch.testing.assert_close(stats(job), before)


@pytest.mark.parametrize("count", [300, 10_000])  # the whole set; more is capped at the whole set
def test_a_subset_of_the_whole_set_equals_the_full_pass(count):
    # One batch holds the whole set, so the batch statistics do not depend on the order.
    full, subset = bn_job(samples=None, batch_size=300), bn_job(samples=count, batch_size=300)
    full.recalibrate_batchnorm()
    assert subset.recalibrate_batchnorm() == 300
    torch.testing.assert_close(stats(subset), stats(full))


def test_channels_last_gives_the_same_statistics():
    plain, fast = bn_job(100), bn_job(100)
    plain.recalibrate_batchnorm(channels_last=False)
    fast.recalibrate_batchnorm(channels_last=True)
    torch.testing.assert_close(stats(fast), stats(plain), rtol=1e-5, atol=1e-6)
    assert fast.net.conv.weight.is_contiguous()  # the model's layout is restored


def test_recalibration_leaves_parameters_trainable():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    recalibrate_batchnorm(model, [(torch.randn(4, 1, 5, 5), None)], progress=False)
    model(torch.randn(2, 1, 5, 5)).sum().backward()  # no inference tensors left behind
    assert model[0].weight.grad is not None


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_evaluation_equals_the_lightning_loop(channels_last):
    import lightning.pytorch as pl

    from chitalab.training import Classifier

    job = bn_job(samples=None)
    job.recalibrate_batchnorm()
    loader = job.config.datamodule.test_dataloader()
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    reference = Classifier(job.net, 4).evaluate(trainer, loader, "dense")
    fast = evaluate_model(job.net, loader, 4, channels_last=channels_last)
    assert fast["test_acc"] == pytest.approx(reference["test_acc"], abs=1e-4)
    assert fast["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)
    assert job.net.training and job.net.conv.weight.is_contiguous()  # mode and layout restored
    job.net(torch.randn(2, 1, 8, 8)).sum().backward()  # the weights are no inference tensors: Fisher still works
    assert job.net.conv.weight.grad is not None


HEAVY = ("lightning", "lightning_fabric", "torchmetrics", "wandb", "timm", "matplotlib")


def imported_by(*args: str) -> set[str]:
    """Top-level packages imported by `python -X importtime ARGS` (read from its report)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True, timeout=HANG
    )  # a fresh process on purpose: what it imports is the test; the timeout only catches a hang
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_cli_import_and_help_load_no_heavy_package():
    code = f"import sys, chitalab.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=HANG
    )
    assert out.stdout.strip() == "[]"
    assert not imported_by("run.py", "--help") & {*HEAVY, "torch", "torchvision"}


def test_a_value_error_stops_before_torch_is_imported():
    assert "torch" not in imported_by("run.py", "sparsity=-0.1", "logger=none")
