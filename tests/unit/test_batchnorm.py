"""BatchNorm statistics re-estimation."""

from __future__ import annotations

import torch

from chitalab.training.batchnorm import recalibrate_batchnorm


def test_batchnorm_recalibration_replaces_running_statistics_with_the_data_average():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(5.0)
    batches = [(torch.randn(8, 3, 4, 4) + i, None) for i in range(3)]
    assert recalibrate_batchnorm(model, batches, progress=False) == 1
    with torch.no_grad():
        means = torch.stack([model[0](x).mean(dim=(0, 2, 3)) for x, _ in batches])
    torch.testing.assert_close(model[1].running_mean, means.mean(dim=0))  # cumulative, not exponential
    assert not model.training and model[1].momentum == 0.1


def test_models_without_batchnorm_are_left_alone():
    model = torch.nn.Linear(3, 2)
    assert recalibrate_batchnorm(model, [(torch.randn(4, 3), None)], progress=False) == 0
