"""Experiment presets: each composes, the grid sweeper's job list, and a preset run end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

from chitalab.cli import group_choices
from chitalab.outputs import RESULTS_FILE
from tests.support import CONF, SYNTHETIC, run_cli

PRESETS = group_choices(CONF, "experiment")


def test_the_issue_presets_exist():
    assert set(PRESETS) >= {
        "paper_oneshot_mlpnet",
        "paper_oneshot_resnet20",
        "paper_oneshot_mobilenet",
        "paper_gradual_resnet20",
        "paper_gradual_resnet50",
        "ablation_iht_iterations",
        "ablation_fisher_samples",
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_as_a_multirun_with_its_grids(preset):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"experiment={preset}", "paths.output_dir=/tmp/x"],
            return_hydra_config=True,
        )
    assert cfg.report.experiment == preset
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper._target_.endswith("GridSweeper") and len(cfg.hydra.sweeper.grids) >= 1
    for key in cfg.report.ablation:
        assert OmegaConf.select(cfg, key) is not None, f"ablation key {key} is not in the config"
    resolved = OmegaConf.to_container(cfg, resolve=False)
    assert resolved["model"]["name"] and resolved["dataset"]["name"]


def jobs(grids: list[dict], command_line: list[str]) -> list[list[str]]:
    # The class as Hydra's plugin scan loaded it (the scan re-executes plugin modules).
    sweeper_class = Plugins.instance().class_name_to_class["hydra_plugins.chitalab_sweeper.grid_sweeper.GridSweeper"]
    sweeper = sweeper_class(grids=grids)
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    overrides = OverridesParser.create().parse_overrides(command_line)
    return [job for batch in sweeper.split_arguments(overrides, None) for job in batch]


def test_grid_sweeper_runs_the_union_of_grids_without_duplicates():
    grids = [{"pruner": "mp,chitapp", "seed": "0"}, {"pruner": "chita", "seed": "0,1,2"}]
    assert sorted(map(tuple, jobs(grids, ["sparsity=0.5,0.9"]))) == sorted(
        [
            (f"pruner={p}", f"seed={s}", f"sparsity={x}")
            for p, s in [("mp", 0), ("chitapp", 0), ("chita", 0), ("chita", 1), ("chita", 2)]
            for x in (0.5, 0.9)
        ]
    )
    # A command-line key replaces it in every grid; the jobs that then coincide run once.
    assert jobs(grids, ["seed=7", "pruner=mp"]) == [["seed=7", "pruner=mp"]]


def test_ablation_preset_records_its_swept_keys(tmp_path):
    done = run_cli(
        "experiment=ablation_iht_iterations",
        *SYNTHETIC,
        "pruner.gradients.n_samples=64",
        "pruner.solver.iterations=0,3",
        "pruner.solver.init=magnitude",
        "sparsity=0.9",
        "seed=0",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"*/{RESULTS_FILE}"))]
    swept = sorted(tuple(r["report"]["ablation"].items()) for r in runs)
    assert swept == [
        (("pruner.solver.iterations", 0), ("pruner.solver.init", "magnitude")),
        (("pruner.solver.iterations", 3), ("pruner.solver.init", "magnitude")),
    ]
    assert all(r["report"]["experiment"] == "ablation_iht_iterations" and r["method"] == "CHITA (iht)" for r in runs)


def test_imagenet_preset_without_imagenet_stops_with_one_line(tmp_path):
    done = run_cli(
        "experiment=paper_oneshot_mobilenet", f"paths.data_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'runs'}"
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "imagenet/train does not exist" in last and "Traceback" not in done.stderr
    assert not list((tmp_path / "runs").glob(f"*/{RESULTS_FILE}"))
