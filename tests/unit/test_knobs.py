"""The knob table (`chitalab.knobs`): every knob refuses a bad value with one line naming its full
key, before torch is imported; the table covers every knob of the composed configs and agrees
with the library's own choices."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from chitalab import knobs
from chitalab.errors import ArgumentError
from tests.support import CONF, REPO, run_cli

COMPOSITIONS = [
    [],
    ["pruner=chita_block", "pruner/search=swap"],
    ["pruner=chitapp"],
    ["pruner=chitapp_block"],
    ["pruner=woodfisher"],
    ["pruner=mp"],
    ["pruner/solver=iht", "pruner.polish.method=cd"],
    ["pruner/solver=active_set"],
    ["pruner/solver=backsolve"],
    ["pattern=nm"],
    ["pattern=per_layer", "pattern.mode=allocated"],
    ["pattern=flops"],
    ["schedule=gradual"],
    ["schedule=gradual_fast", "optim@schedule.optimizer=adamw"],
    ["model=resnet20"],
    ["model=tiny_mlp"],
    ["model=resnet50", "dataset=synthetic_imagenet"],
    ["model=resnet50"],
    ["logger=csv"],
    # knobs a class takes that no YAML file sets (added with a leading +), and interpolations replaced
    ["pruner.gradients.store=true", "pruner.gradients.store_max_gb=5", "+dataset.datamodule.eval_batch_size=100"],
    ["pruner=chitapp", "+pruner.stage_pruner.step_search.batch_size=64"],
    ["model=tiny_mlp", "+dataset.datamodule.num_workers=0"],
]
"""Together they bring every node the table declares (checked below)."""

NOT_KNOBS = {
    # names, files and folders: any string is a valid one (a missing file is found where it is read)
    "paths.data_dir",
    "paths.checkpoint_dir",
    "paths.cache_dir",
    "paths.output_dir",
    "ckpt_path",
    "model.name",
    "model.checkpoint",
    "model.checkpoint_url",
    "model.net.name",
    "dataset.name",
    "dataset.datamodule.data_dir",
    "dataset.datamodule.cache_dir",
    "dataset.datamodule.npz_file",
    "dataset.datamodule.root",
    "report.experiment",
    "schedule.callbacks.checkpoint.dirpath",
    "pruner.gradients.store_dir",
    "pruner.stage_pruner.gradients.store_dir",
    "logger.project",
    "logger.save_dir",
    "logger.name",
    "logger.group",
    "logger.job_type",
    # values that are interpolations of a declared knob (checked at their source)
    "pruner.gradients.store",
    "pruner.gradients.store_max_gb",
    "pruner.stage_pruner.gradients.store",
    "pruner.stage_pruner.gradients.store_max_gb",
    "dataset.datamodule.normalization",
    "dataset.datamodule.num_classes",
    "model.net.num_classes",
    "model.net.pretrained",
}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def declared_leaves(cfg) -> list[tuple[str, str, knobs.Knob]]:
    """(full key, where, knob) for every declared knob present in `cfg`."""
    found = []
    for path, node in knobs.nodes(cfg):
        target = knobs.raw(node, "_target_")
        for table, where in ((knobs.PATHS, path), (knobs.NODES, target)):
            for name, knob in table.get(where, {}).items() if isinstance(where, str) else ():
                if knob is None or name not in node or OmegaConf.is_interpolation(node, name):
                    continue
                found.append((f"{path}.{name}" if path else name, where, knob))
    return found


def leaves(cfg, prefix: str = "") -> list[str]:
    """Every scalar or list leaf key of `cfg` (Hydra's own keys, `_target_` and `_partial_` left out)."""
    keys = []
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if full == "hydra" or key in ("_target_", "_partial_", "_convert_"):
            continue
        node = cfg._get_node(key)
        if OmegaConf.is_dict(node) and not node._is_none():
            keys += leaves(node, full + ".")
        else:
            keys.append(full)
    return keys


ALL = {tuple(overrides): composed(overrides) for overrides in COMPOSITIONS}
CASES = sorted(
    {
        (full, where, name_kind)
        for overrides, cfg in ALL.items()
        for full, where, knob in declared_leaves(cfg)
        for name_kind in ("out_of_range", "wrong_type")
    }
)
WHERE = {(full, where): overrides for overrides, cfg in ALL.items() for full, where, _ in declared_leaves(cfg)}


def test_every_declared_knob_sits_in_one_of_the_compositions():
    present = {(where, full.rsplit(".", 1)[-1]) for full, where, _ in CASES}
    missing = [(where, name) for where, name, _ in knobs.every_knob() if (where, name) not in present]
    assert not missing, f"declared but never composed here: {missing}"


@pytest.mark.parametrize("overrides", COMPOSITIONS, ids=lambda o: " ".join(o) or "defaults")
def test_every_knob_of_the_config_is_declared(overrides):
    """So every knob in the README's tables (and any added to a YAML file later) has a check."""
    cfg = ALL[tuple(overrides)]
    declared = {full for full, _, _ in declared_leaves(cfg)}
    undeclared = [key for key in leaves(cfg) if key not in declared and key not in NOT_KNOBS]
    assert not undeclared, f"knobs without a declaration in chitalab.knobs: {undeclared}"


def test_each_bad_value_of_every_knob_is_one_line_naming_its_full_key():
    slowest = (0.0, "")
    count = 0
    for (full, where), overrides in sorted(WHERE.items()):
        knob = dict(knobs.PATHS.get(where, {}) | knobs.NODES.get(where, {}))[full.rsplit(".", 1)[-1]]
        assert knob is not None
        for bad in knob.bad_values():
            cfg = copy.deepcopy(ALL[overrides])
            OmegaConf.update(cfg, full, bad, merge=False)
            started = time.perf_counter()
            with pytest.raises(ArgumentError) as info:
                knobs.check_config(cfg)
            seconds = time.perf_counter() - started
            slowest = max(slowest, (seconds, f"{full}={bad!r}"))
            message = str(info.value)
            assert message.startswith(f"{full}={knobs.shown(bad)} is not allowed; "), (full, bad, message)
            assert "\n" not in message and info.value.argument == full
            count += 1
    assert count >= 2 * 80
    print(f"\nknob walk: {count} bad values, slowest check {slowest[0] * 1000:.1f} ms ({slowest[1]})")


def test_the_defaults_of_every_composition_pass():
    for cfg in ALL.values():
        knobs.check_config(copy.deepcopy(cfg))


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model.prune.include=fc1.weight", ["fc1.weight"]),
        ("model.prune.include=fc1*", ["fc1*"]),
        ("model.prune.exclude=fc3.weight", ["fc3.weight"]),
        ("model.prune.include=[fc1.weight,fc2.weight]", ["fc1.weight", "fc2.weight"]),
    ],
)
def test_a_single_pattern_string_is_one_pattern(override, expected):
    cfg = composed(["model=tiny_mlp", override])
    knobs.check_config(cfg)
    key = override.partition("=")[0]
    assert OmegaConf.to_container(OmegaConf.select(cfg, key)) == expected


def test_a_single_number_is_a_list_of_one_for_list_valued_number_knobs():
    cfg = composed(["pruner=chitapp", "pruner.stage_pruner.step_search.sizes=0.5", "pattern=per_layer"])
    OmegaConf.update(cfg, "pattern.densities", 0.5, merge=False)
    knobs.check_config(cfg)
    assert list(cfg.pruner.stage_pruner.step_search.sizes) == [0.5] and list(cfg.pattern.densities) == [0.5]


def test_the_declared_choices_are_the_librarys():
    from chitalab.data.cifar10 import NORMALIZATIONS
    from chitalab.data.images import SOURCES
    from chitalab.fisher.gradients import METHODS
    from chitalab.fisher.source import DTYPES
    from chitalab.pruning.schedules import SPARSITY_SCHEDULES
    from chitalab.solver import WOODFISHER_UPDATES
    from chitalab.solver.dead import RULES
    from chitalab.solver.iht import INITS
    from chitalab.solver.per_layer import MODES
    from chitalab.solver.polish import POLISH_METHODS

    assert knobs.SPARSITY_SCHEDULES == SPARSITY_SCHEDULES
    assert knobs.DEAD_RULES == RULES
    assert knobs.GRADIENT_DTYPES == tuple(DTYPES)
    assert knobs.GRADIENT_METHODS == METHODS
    assert knobs.SOLVER_INITS == INITS
    assert knobs.POLISH_METHODS == POLISH_METHODS
    assert knobs.WOODFISHER_UPDATES == WOODFISHER_UPDATES
    assert knobs.PER_LAYER_MODES == MODES
    assert knobs.DATA_SOURCES == SOURCES
    assert knobs.CIFAR10_NORMALIZATIONS == tuple(NORMALIZATIONS)


def test_the_trainer_values_are_what_lightning_accepts():
    import typing

    from lightning.fabric import connector
    from lightning.pytorch.strategies import StrategyRegistry

    precisions = typing.get_args(connector._PRECISION_INPUT_STR) + typing.get_args(connector._PRECISION_INPUT_STR_ALIAS)
    assert knobs.LIGHTNING_PRECISIONS == precisions
    assert set(knobs.LIGHTNING_STRATEGIES) - {"auto"} <= set(StrategyRegistry.available_strategies())
    devices = knobs.Devices()
    for good in (1, 2, -1, "auto", [0], [0, 1], "0,1", "1"):
        assert devices.check("trainer.devices", good) == good
    for bad in (0, -2, "abc", [], [-1], 1.5, True):
        with pytest.raises(ArgumentError):
            devices.check("trainer.devices", bad)


def test_the_knob_table_imports_neither_torch_nor_lightning():
    code = "import sys, chitalab.knobs, chitalab.cli; print('torch' in sys.modules, 'lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


# Through the command line: each is refused before torch is imported (no progress, no folder use).
CLI_CASES = {
    "cache.fisher=maybe": "cache.fisher='maybe' is not allowed; it must be true or false",
    "progress=maybe": "progress='maybe' is not allowed; it must be true or false",
    "keep_going=maybe": "keep_going='maybe' is not allowed; it must be true or false",
    "pruner.first_order_term=maybe": "pruner.first_order_term='maybe' is not allowed; it must be true or false",
    "seed=99999999999": "seed=99999999999 is not allowed; it must be an integer in [0, 4294967295]",
    "dataset.datamodule.batch_size=0": "dataset.datamodule.batch_size=0 is not allowed; it must be an integer >= 1",
    "dataset.datamodule.num_train=0": "dataset.datamodule.num_train=0 is not allowed; it must be an integer >= 1",
    "trainer.devices=abc": "trainer.devices='abc' is not allowed; give a device count >= 1, -1 (all), auto, "
    "or a list of device indices such as [0,1]",
    "trainer.precision=foo": "trainer.precision='foo' is not allowed; choose one of: 16-true, 16-mixed, bf16-true, "
    "bf16-mixed, 32-true, 64-true (Lightning's precisions)",
    "deploy.latency_budget_s=-1": "deploy.latency_budget_s=-1 is not allowed; it must be a finite number > 0",
    "cache.max_gb=-1": "cache.max_gb=-1 is not allowed; it must be a finite number > 0",
    "dataset=cifar10 dataset.datamodule.eval_batch_size=0": "dataset.datamodule.eval_batch_size=0 is not allowed; "
    "it must be an integer >= 1, or null",
    "pruner.gradients.n_samples=0": "pruner.gradients.n_samples=0 is not allowed; it must be an integer >= 1",
}


@pytest.mark.parametrize("override", sorted(CLI_CASES))
def test_bad_values_are_refused_by_the_cli_in_one_line_with_exit_2(tmp_path, override):
    done = run_cli("model=tiny_mlp", *override.split(), f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {CLI_CASES[override]}"]
