"""Sweepers that check every job's config before the first job starts (`checked`, the
default, and `grids`); with `keep_going=true` a bad job is reported and the others run.

A Hydra sweeper over a union of grids, so one multirun can give cheap methods several
seeds and costly ones a single seed (`hydra/sweeper: grids`, used by conf/experiment/).

Each grid is a mapping `key: "v1,v2,..."` swept as Hydra's basic sweeper would; the jobs of
all grids run in order, duplicates once. A key given on the command line replaces that key
in every grid (`python run.py experiment=paper_oneshot_mlpnet seed=0`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.chitalab_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    grids: list[dict[str, Any]] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="grids", node=GridSweeperConf, provider="chitalab")


class CheckedSweeper(BasicSweeper):
    """Hydra's basic sweeper, but a batch of jobs (all of them, unless max_batch_size is set) is
    checked with `chitalab.cli.check_sweep` (composition and values) before any of it runs."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from chitalab.cli import check_sweep

        assert self.hydra_context is not None and self.config is not None
        check_sweep(self.hydra_context.config_loader, self.config, batch)


class GridSweeper(CheckedSweeper):
    """BasicSweeper whose parameters are a list of grids instead of one (without grids: the
    basic sweeper, `params` included; conf/hydra/default.yaml makes it the default)."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        grids: list[dict[str, Any]] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = [dict(grid) for grid in grids or [{}]]

    def split_arguments(  # type: ignore[override]  # an instance method: it needs the config loader
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The jobs of every grid, `overrides` (the command line) replacing grid keys."""
        assert self.hydra_context is not None  # set by Hydra before the sweep
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = {override.get_key_element() for override in overrides}
        jobs: list[list[str]] = []
        for grid in self.grids:
            params = [f"{key}={value}" for key, value in grid.items() if key not in given]
            for job in BasicSweeper.split_arguments(parser.parse_overrides(params) + overrides, None)[0]:
                if job not in jobs:
                    jobs.append(job)
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))
