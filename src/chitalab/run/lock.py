"""One job per output folder: a second job aimed at a folder in use stops with one line
instead of mixing its files with the first one's."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

LOCK_FILE = ".lock"


def folder_in_use(out_dir: Path) -> bool:
    """Whether a running job holds `out_dir`'s lock (a lock left by a killed job does not count:
    the kernel drops it with the process). A DDP worker of the job itself never sees it in use."""
    path = out_dir / LOCK_FILE
    if is_worker_process():
        return False
    if not path.is_file():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def in_use_error(out_dir: Path) -> UserError:
    return UserError(
        f"the output folder {out_dir} is in use by another running job; give this one its own "
        "hydra.run.dir (or leave it unset: every run gets a new folder)"
    )


def is_worker_process() -> bool:
    """A DDP process other than the launching one (Lightning restarts run.py for each with
    LOCAL_RANK set, in the launcher's folder): it shares the job's folder and lock."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("NODE_RANK", "0") or 0) > 0


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out_dir/.lock` while the job runs (the launching process only)."""
    if is_worker_process():
        yield
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / LOCK_FILE, "a")
    except OSError as err:
        raise UserError(f"cannot write to the output folder {out_dir}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use_error(out_dir) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
