"""Entry-point helpers: check config-group choices before Hydra starts, and report user
errors as one line with a non-zero exit code."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from .errors import ArgumentError, UserError, check_fraction, check_int

log = logging.getLogger(__name__)
CHECKED_GROUPS = ("model", "dataset", "pruner", "pattern", "schedule", "logger", "experiment")
EXIT_USER_ERROR = 2
FULL_KEY = re.compile(r"\nfull_key: (\S+)")


def group_choices(conf_dir: Path | list[Path], group: str) -> list[str]:
    """The options of `group` in one config folder or several (Hydra's search path)."""
    folders = conf_dir if isinstance(conf_dir, list) else [conf_dir]
    return sorted({p.stem for folder in folders for p in (folder / group).glob("*.yaml")})


def search_path(argv: list[str]) -> list[Path]:
    """Config folders added with `hydra.searchpath=[file://DIR,...]` (where users keep their
    own solvers, patterns and presets)."""
    folders = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra.searchpath":
            folders += [
                Path(item.strip()[len("file://") :])
                for item in value.strip("[]").split(",")
                if item.strip().startswith("file://")
            ]
    return folders


def check_group_overrides(argv: list[str], conf_dir: Path) -> str | None:
    """The error message for the first `group=value` override (also a nested group such as
    `pruner/solver=iht`) naming an unknown option, sweeps (`pruner=mp,chita`) included; None
    when all are known. Folders on `hydra.searchpath` count too."""
    folders = [conf_dir, *search_path(argv)]
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        group = key.lstrip("+~").split("@")[0]
        if not (group in CHECKED_GROUPS or ("/" in group and group.split("/")[0] in CHECKED_GROUPS)) or "(" in value:
            continue
        choices = group_choices(folders, group)
        for option in value.split(","):
            if option and option != "null" and option not in choices:
                return f"unknown {group} {option!r}; choose one of: {', '.join(choices)}"
    return None


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind `err`, also when Hydra's instantiate wrapped it: an ArgumentError then
    gets the config key Hydra was instantiating (`pruner.solver.iterations=...`)."""
    seen: set[int] = set()
    full_key = None
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, ArgumentError) and full_key:
            return current.with_prefix(full_key)
        if isinstance(current, UserError):
            return current
        match = FULL_KEY.search(str(current))
        if match:
            full_key = match.group(1)  # the innermost wrapper names the object that failed
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def fail(message: str) -> NoReturn:
    """Print `error: message` to stderr on one line (a wrapped library message, e.g. a failed
    download's, may hold newlines) and exit with the user-error code."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)


def run_job(cfg: DictConfig) -> None:
    """Run one job; user errors end it with one line on stderr and exit code 2."""
    start = time.perf_counter()
    try:
        # The top-level values first, so a bad one fails in a second, before torch is imported.
        check_fraction("sparsity", cfg.sparsity)
        check_int("seed", cfg.seed, 0)
        from .run.config import read_job  # heavy imports only once the config is known to be valid
        from .run.main import run

        run(read_job(cfg), start)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        log.error(str(user_error))
        fail(str(user_error))
