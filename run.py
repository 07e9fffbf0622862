"""Hydra entry point: `python run.py pruner=chita sparsity=0.9` (see README.md)."""

import atexit
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from chitalab.cli import check_group_overrides, fail, run_job

CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    problem = check_group_overrides(sys.argv[1:], CONF_DIR)
    if problem:
        fail(problem)
    main()
    # Every job is done and its files are closed: run the exit hooks (logging, W&B, threads) and
    # skip the interpreter's teardown of torch's modules, which takes seconds on a loaded machine.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
