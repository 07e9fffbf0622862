"""Hydra entry point: `python run.py pruner=chita sparsity=0.9` (see README.md)."""

import atexit
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from chitalab.cli import FAILED_JOBS, check_composition, check_group_overrides, check_output_dir, fail, run_job

CONF_DIR = Path(__file__).resolve().parent / "src" / "chitalab" / "conf"


@hydra.main(version_base="1.3", config_path="src/chitalab/conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    argv = sys.argv[1:]
    problem = check_group_overrides(argv, CONF_DIR) or check_output_dir(argv) or check_composition(argv, CONF_DIR)
    if problem:
        fail(problem)
    main()
    if FAILED_JOBS:
        fail(f"{len(FAILED_JOBS)} job(s) of the multirun failed: " + "; ".join(FAILED_JOBS))
    # Every job is done and its files are closed: run the exit hooks (logging, W&B, threads) and
    # skip the interpreter's teardown of torch's modules, which takes seconds on a loaded machine.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
