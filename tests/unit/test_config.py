"""Every config-group option composes with the main config (Hydra compose API)."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from chitalab.cli import CHECKED_GROUPS, check_group_overrides, group_choices
from tests.support import CONF

OPTIONS = [(group, option) for group in CHECKED_GROUPS for option in group_choices(CONF, group)]


@pytest.mark.parametrize("group,option", OPTIONS)
def test_option_composes_and_resolves(group, option):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"{group}={option}", "paths.output_dir=/tmp/x"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert 0 <= resolved["sparsity"] < 1


def test_defaults_are_the_paper_one_shot_setting_with_the_swap_search_and_the_ridge_chosen_on_training_data():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config")
    assert (cfg.model.name, cfg.dataset.name, cfg.schedule._target_) == (
        "mlpnet",
        "mnist",
        "chitalab.run.oneshot.OneShot",
    )
    assert cfg.pruner.gradients.n_samples == 1000 and cfg.pruner.gradients.mini_bsz == 1
    assert (
        cfg.pruner.solver._target_ == "chitalab.solver.Swap"
        and cfg.pruner.l2 == "auto"
        and cfg.pruner.dead_columns == "drop"
        and cfg.pattern._target_ == "chitalab.solver.GlobalTopK"
    )
    assert cfg.logger.offline is True


def test_group_override_check():
    assert check_group_overrides(["pruner=mp,chita", "sparsity=0.5"], CONF) is None
    assert check_group_overrides(["model=vgg"], CONF).startswith("unknown model 'vgg'; choose one of: ")
    assert check_group_overrides(["pruner.solver.iterations=anything"], CONF) is None  # checked by the solver
    assert check_group_overrides(["pruner/solver=iht"], CONF) is None
    assert check_group_overrides(["pruner/solver=newton"], CONF).startswith("unknown pruner/solver 'newton'")


NATURAL_DATASETS = {
    "mlpnet": "mnist",
    "resnet20": "cifar10",
    "mobilenetv1": "imagenet",
    "resnet50": "imagenet",
    "timm": "imagenet",
    "tiny_mlp": "synthetic",
}


@pytest.mark.parametrize("model", sorted(NATURAL_DATASETS))
def test_a_model_brings_its_natural_dataset_and_an_explicit_dataset_wins(model):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        natural = compose(config_name="config", overrides=[f"model={model}"])
        before = compose(config_name="config", overrides=["dataset=synthetic_imagenet", f"model={model}"])
        after = compose(config_name="config", overrides=[f"model={model}", "dataset=synthetic_imagenet"])
    assert natural.dataset.name == NATURAL_DATASETS[model]
    assert before.dataset.name == after.dataset.name == "synthetic_imagenet"
    assert natural.model.name == before.model.name  # the model itself is unchanged


def test_the_resnet20_gradual_schedule_brings_the_block_method_and_an_explicit_pruner_wins():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        natural = compose(config_name="config", overrides=["schedule=gradual_fast_resnet20", "model=resnet20"])
        before = compose(config_name="config", overrides=["pruner=mp", "schedule=gradual_fast_resnet20"])
        after = compose(config_name="config", overrides=["schedule=gradual_fast_resnet20", "pruner=woodfisher"])
    assert natural.pruner._target_ == "chitalab.pruning.ChitaBlockPruner"
    assert before.pruner._target_ == "chitalab.pruning.MagnitudePruner"
    assert after.pruner._target_ == "chitalab.pruning.WoodFisherPruner"
    assert (natural.schedule.epochs, natural.schedule.prune_every, natural.schedule.nprune_epochs) == (16, 2, 4)


def test_a_missing_extra_is_one_line_naming_what_to_install():
    from chitalab.errors import UserError, require_extra

    require_extra("omegaconf", "core", "the config")  # installed: nothing to say
    with pytest.raises(UserError) as err:
        require_extra("no_such_module_here", "wandb", "logger=wandb", instead="choose logger=none")
    assert str(err.value) == (
        "logger=wandb needs no_such_module_here, which is not installed: pip install 'chitalab[wandb]', "
        "or choose logger=none"
    )


def test_the_optimizer_the_trainer_and_its_callbacks_come_from_config(tmp_path):
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from chitalab.training import LastCheckpoint

    overrides = [
        "schedule=gradual_fast",
        "optim@schedule.optimizer=adamw",
        "+schedule.callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor",
        f"paths.output_dir={tmp_path}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    kind = instantiate(cfg.schedule)
    optimizer = kind.optimizer(torch.nn.Linear(2, 2).parameters())
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 0.05  # gradual_fast's lr
    assert isinstance(kind.callbacks["lr_monitor"], LearningRateMonitor)
    assert isinstance(kind.callbacks["checkpoint"], LastCheckpoint)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
