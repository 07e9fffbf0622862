"""Entry-point helpers: check config-group choices before Hydra starts, and report user
errors as one line with a non-zero exit code."""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import ArgumentError, UserError
from .knobs import check_config
from .preflight import check_files

log = logging.getLogger(__name__)
CHECKED_GROUPS = ("model", "dataset", "pruner", "pattern", "schedule", "logger", "experiment")
EXIT_USER_ERROR = 2
EXIT_BUG = 1
MIN_FREE_BYTES = 1 << 20  # below this, a run folder is refused before Hydra writes into it
FULL_KEY = re.compile(r"\nfull_key: (\S+)")
# A short random suffix for run folder names (conf/hydra/default.yaml); cached, so one process
# resolves it to one value.
OmegaConf.register_new_resolver("run_suffix", lambda: secrets.token_hex(3), use_cache=True, replace=True)


def hydra_job() -> Any:
    """The running job's Hydra config, None outside a Hydra job (the compose API, a saved config)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def run_name() -> str | None:
    """The experiment logger's run name: the job's overrides (`pruner=mp,sparsity=0.5`), or the
    name of its run folder when it has none (a run of the defaults); None outside a Hydra job."""
    job = hydra_job()
    if job is None:
        return None
    return job.job.override_dirname or Path(str(job.runtime.output_dir)).name or None


def run_group(experiment: str | None) -> str | None:
    """The logger's group: the experiment preset, else the multirun's folder name; None for a single run."""
    from hydra.types import RunMode

    job = hydra_job()
    if experiment or job is None or job.mode != RunMode.MULTIRUN:
        return experiment
    return Path(job.sweep.dir).name


def run_choice(group: str) -> str | None:
    """The option the job chose for a config group (`schedule` -> `oneshot`)."""
    job = hydra_job()
    return job.runtime.choices.get(group) if job is not None else None


# The logger's name, group and job type (conf/logger/wandb.yaml)
OmegaConf.register_new_resolver("run_name", run_name, replace=True)
OmegaConf.register_new_resolver("run_group", run_group, replace=True)
OmegaConf.register_new_resolver("run_choice", run_choice, replace=True)


def check_output_dir(argv: list[str]) -> str | None:
    """The error for an output folder that cannot be used, before Hydra writes into it: one
    that a running job holds (an explicit `hydra.run.dir`), or a read-only location."""
    from .run.lock import folder_in_use, in_use_error

    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    explicit = [arg.partition("=")[2] for arg in argv if arg.lstrip("+").partition("=")[0] == key]
    target = Path(explicit[-1]) if explicit else Path("outputs")
    if explicit and not multirun and folder_in_use(target):
        return str(in_use_error(target))
    existing = target.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return f"cannot write the run folder {target}: {existing} is not writable; set {key}=<a writable folder>"
    if shutil.disk_usage(existing).free < MIN_FREE_BYTES:  # Hydra's own files would fail with a traceback
        return (
            f"cannot write the run folder {target}: no space left on device in {existing}; "
            f"free some space there or set {key}=<a folder with space>"
        )
    return None


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


UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")
UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '([^']+)'")
TARGET = re.compile(r"Error in call to target '([^']+)'")


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a (DictConfig) tree, without `hydra.*`."""
    keys = []
    if OmegaConf.is_dict(cfg):
        for key in cfg.keys():
            full = f"{prefix}{key}"
            if full == "hydra":
                continue
            keys.append(full)
            node = cfg._get_node(key)
            if OmegaConf.is_dict(node):
                keys += config_keys(node, full + ".")
    return keys


def unknown_key_message(key: str, cfg: Any) -> str:
    """`key is not a config key; did you mean X?` with X the closest existing key (its last part first)."""
    keys = config_keys(cfg)
    leaf = key.split(".")[-1]
    if "." not in key:  # a top-level typo (sparsty): the closest top-level key
        top = [k for k in keys if "." not in k]
        guess = next(iter(difflib.get_close_matches(key, top, n=1, cutoff=0.6)), None)
        if guess:
            return f"{key} is not a config key; did you mean {guess}?"
    same_group = [k for k in keys if k.split(".")[0] == key.split(".")[0]]
    by_leaf = {k.split(".")[-1]: k for k in reversed(same_group)}
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
    guess = by_leaf[close[0]] if close else next(iter(difflib.get_close_matches(key, keys, n=1, cutoff=0.6)), None)
    hint = (
        f"; did you mean {guess}?"
        if guess
        else f"; run with --cfg job to see the keys{f' of {key.split(chr(46))[0]}' if '.' in key else ''}"
    )
    return f"{key} is not a config key{hint} (a new key needs a leading +, and only a class that takes it accepts it)"


def composition_error(err: BaseException, cfg: Any) -> str:
    """One line for a failed Hydra composition (an unknown key gets a "did you mean")."""
    text = str(err)
    match = UNKNOWN_KEY.search(text)
    if match:
        return unknown_key_message(match.group(1), cfg)
    return " ".join(text.split("\n")[0].split()) or type(err).__name__


def check_composition(argv: list[str], conf_dir: Path) -> str | None:
    """Compose a single run's config before Hydra does, so an unknown key is one line (exit 2)
    instead of Hydra's message (exit 1). Multiruns are checked by the sweeper, job by job."""
    if "-m" in argv or "--multirun" in argv or any(arg.startswith("-") for arg in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [arg for arg in argv if not arg.startswith("-")]
    try:
        if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides)):
            return None  # a preset's multirun (hydra.mode=MULTIRUN): its sweeper checks each job
    except Exception as err:
        return composition_error(err, None)
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        try:
            compose("config", overrides=overrides)
        except Exception as err:
            unknown = UNKNOWN_KEY.search(str(err))
            base = [
                arg
                for arg in overrides
                if ("." not in arg.partition("=")[0] or arg.startswith("hydra."))
                and not (unknown and arg.lstrip("+~").partition("=")[0] == unknown.group(1))
            ]
            try:
                cfg = compose("config", overrides=base)
            except Exception:
                cfg = None
            return composition_error(err, cfg)
    return None


def instantiation_error(err: BaseException, full_key: str | None) -> UserError | None:
    """A TypeError from Hydra's instantiate (an unknown or missing argument) as a UserError naming
    the config key and the arguments the class takes."""
    text = str(err)
    if not isinstance(err, TypeError) or full_key is None:
        return None
    unexpected = UNEXPECTED_ARGUMENT.search(text)
    if not unexpected:
        return UserError(f"{full_key}: {' '.join(text.split())}")
    return UserError(
        f"{full_key}: unexpected argument {unexpected.group(1)!r}; remove {full_key}.{unexpected.group(1)}"
    )


LOCATE_TARGET = re.compile(r"Error locating target '([^']+)'")


def target_error(err: BaseException, full_key: str) -> UserError | None:
    """A `_target_` that does not import (Hydra's "Error locating target") as one line naming the key."""
    match = LOCATE_TARGET.search(str(err))
    if not match:
        return None
    cause = err.__cause__
    inner = cause.__cause__ if cause is not None and cause.__cause__ is not None else cause
    why = f" ({' '.join(str(inner).split())})" if inner is not None else ""
    return UserError(
        f"{full_key}._target_={match.group(1)} cannot be imported{why}; give a class importable from "
        "this Python (a module on PYTHONPATH, or a config folder on hydra.searchpath whose class is installed)"
    )


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind `err`, also when Hydra's instantiate wrapped it: an ArgumentError then
    gets the config key Hydra was instantiating (`pruner.solver.iterations=...`), and a library's
    argument error (TypeError, ValueError) raised while instantiating a node names that node."""
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
            located = target_error(current, full_key)
            if located is not None:
                return located
        type_error = instantiation_error(current, full_key)
        if type_error is not None:
            return type_error
        if full_key and isinstance(current, ValueError) and not FULL_KEY.search(str(current)):
            return UserError(f"{full_key}: {' '.join(str(current).split())}")
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def file_error(err: BaseException, folders: dict[str, str]) -> UserError | None:
    """A file-system error (OSError) as one line: the file, the system's reason, and the key whose
    folder holds it (`folders`: key -> folder), when one does."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.strerror:
            name = current.filename
            where = f" {name}" if name else ""
            key = next(
                (k for k, folder in folders.items() if name and str(Path(str(name)).absolute()).startswith(folder)),
                None,
            )
            hint = f" (under {key}; point it to a usable folder)" if key else ""
            return UserError(f"cannot use{where}: {current.strerror}{hint}")
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


BUG = (
    "this is a bug in chitalab, not a problem with your input: please report it with the traceback above "
    "and the command line"
)


FAILED_JOBS: list[str] = []
"""Jobs of a `keep_going=true` multirun that failed (reported by run.py at the end)."""


def check_sweep(config_loader: Any, master: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
    """Compose and check the values of every job of a multirun (see `run.config.check_values`).
    Bad jobs are printed one line each; then the sweep stops with exit code 2 before any job
    starts, unless `keep_going=true` (the bad jobs then fail, reported, and the others run)."""
    from .run.config import check_values

    problems = []
    for number, overrides in enumerate(jobs):
        try:
            cfg = config_loader.load_sweep_config(master_config=master, sweep_overrides=list(overrides))
        except Exception as err:
            problems.append(f"job {number} ({' '.join(overrides)}): {composition_error(err, master)}")
            continue
        try:
            with open_dict(cfg):
                cfg.pop("hydra", None)
            check_values(cfg)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None:
                raise
            problems.append(f"job {number} ({' '.join(overrides)}): {user_error}")
    if not problems:
        return
    for problem in problems:
        print(f"error: {' '.join(problem.split())}", file=sys.stderr)
    if not master.get("keep_going", False):
        fail(f"{len(problems)} of {len(jobs)} jobs have bad settings (above); none was started")
    log.warning("keep_going=true: %d of %d jobs will fail (above); running the others", len(problems), len(jobs))


def fail(message: str) -> NoReturn:
    """Print `error: message` to stderr on one line (a wrapped library message, e.g. a failed
    download's, may hold newlines) and exit with the user-error code."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)


def run_job(cfg: DictConfig) -> None:
    """Run one job; user errors end it with one line on stderr and exit code 2, a SIGTERM or
    SIGINT with one line and 128 + the signal number (see `chitalab.signals`)."""
    start = time.perf_counter()
    from .noise import quiet_third_party
    from .run.lock import run_lock
    from .signals import Interrupted, graceful_stop

    quiet_third_party()

    try:
        # Every declared knob first, so a bad value fails in a second, before torch is imported.
        check_config(cfg)
        check_files(cfg)
        with graceful_stop(), run_lock(Path(cfg.paths.output_dir)):
            from .run.config import read_job  # heavy imports only once the config is known to be valid
            from .run.main import run

            try:
                run(read_job(cfg), start)
            except SystemExit as lightning_stop:  # Lightning's own SIGTERMException exits with 0
                if type(lightning_stop).__name__ == "SIGTERMException":
                    raise Interrupted(signal.SIGTERM) from None
                raise
    except Exception as err:
        if isinstance(err, Interrupted):
            log_to_file(str(err))
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        user_error = find_user_error(err) or file_error(err, known_folders(cfg))
        if user_error is None:
            log_to_file(f"{BUG}\n{traceback.format_exc()}")
            traceback.print_exc()
            print(f"error: {BUG}", file=sys.stderr)
            raise SystemExit(EXIT_BUG) from None
        log_to_file(str(user_error) + (f" (details: {user_error.details})" if user_error.details else ""))
        if cfg.get("keep_going", False) and multirun_job() is not None:
            FAILED_JOBS.append(f"job {multirun_job()}: {user_error}")
            print(
                f"error: job {multirun_job()} failed (keep_going=true, going on): {' '.join(str(user_error).split())}",
                file=sys.stderr,
            )
            return
        fail(str(user_error))


def known_folders(cfg: DictConfig) -> dict[str, str]:
    """The folders a file-system error is reported under: key -> absolute folder (deepest first)."""
    folders = {}
    for key in ("paths.cache_dir", "paths.data_dir", "paths.checkpoint_dir", "paths.output_dir"):
        try:
            folders[key] = str(Path(str(OmegaConf.select(cfg, key))).absolute())
        except Exception:  # an unresolvable folder (outside a Hydra job) names no key
            continue
    return dict(sorted(folders.items(), key=lambda item: -len(item[1])))


def log_to_file(message: str) -> None:
    """Record an error in the job's log file only: the terminal shows it once, as the `error:` line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def multirun_job() -> int | None:
    """The job number in a multirun, None in a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return int(HydraConfig.get().job.num)
