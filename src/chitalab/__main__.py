"""The `chitalab` command (also `python -m chitalab` and `python run.py`): one Hydra job or a
multirun, with the same overrides everywhere (see docs/usage.md)."""

from __future__ import annotations

import atexit
import os
import sys

import hydra
from omegaconf import DictConfig

from .cli import FAILED_JOBS, check_composition, check_group_overrides, check_output_dir, fail, run_job
from .conf import CONF_DIR


@hydra.main(version_base="1.3", config_path="pkg://chitalab.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    run_job(cfg)


def run() -> None:
    """Check the command line in `sys.argv` (group options, output folder, composition) and run
    the job(s); a user error raises SystemExit with its code. The tests call this in process."""
    FAILED_JOBS.clear()  # a command run again in the same process (the tests) starts with none
    argv = sys.argv[1:]
    problem = check_group_overrides(argv, CONF_DIR) or check_output_dir(argv) or check_composition(argv, CONF_DIR)
    if problem:
        fail(problem)
    hydra_main()
    if FAILED_JOBS:
        fail(f"{len(FAILED_JOBS)} job(s) of the multirun failed: " + "; ".join(FAILED_JOBS))


def main() -> None:
    """The command: `run`, then exit at once."""
    run()
    # Every job is done and its files are closed: run the exit hooks (logging, W&B, threads) and
    # skip the interpreter's teardown of torch's modules, which takes seconds on a loaded machine.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
