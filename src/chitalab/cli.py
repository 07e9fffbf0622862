"""Entry-point helpers: check config-group choices before Hydra starts, and report user
errors as one line with a non-zero exit code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from .errors import UserError

log = logging.getLogger(__name__)
CHECKED_GROUPS = ("model", "dataset", "pruner", "schedule", "logger", "experiment")
EXIT_USER_ERROR = 2


def group_choices(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def check_group_overrides(argv: list[str], conf_dir: Path) -> str | None:
    """The error message for the first `group=value` override naming an unknown option,
    sweeps (`pruner=mp,chita`) included; None when all are known."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        group = key.lstrip("+")
        if group not in CHECKED_GROUPS or "(" in value:
            continue
        choices = group_choices(conf_dir, group)
        for option in value.split(","):
            if option and option != "null" and option not in choices:
                return f"unknown {group} {option!r}; choose one of: {', '.join(choices)}"
    return None


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind `err`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def fail(message: str) -> None:
    """Print `error: message` to stderr on one line (a wrapped library message, e.g. a failed
    download's, may hold newlines) and exit with the user-error code."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)


def run_job(cfg: DictConfig) -> dict:
    """Run one job; user errors end it with one line on stderr and exit code 2."""
    from .experiment import run  # heavy imports only once the config is known to be valid

    try:
        return run(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        log.error(str(user_error))
        fail(str(user_error))
