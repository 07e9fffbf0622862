"""SIGTERM and SIGINT: stop a job at a safe point, with a resumable checkpoint on disk and a
non-zero exit code (128 + the signal number: 143 for SIGTERM, 130 for SIGINT), so that
`timeout`, SLURM, `docker stop` or Kubernetes never record an interrupted job as a success.

Outside training a signal stops the job at once. During a gradual run's training it is
deferred to the next safe point: the end of the current batch, or the end of the current
pruning step (whose checkpoint is then written; see `chitalab.training.safe_stop`). A second
signal stops at once. This module imports nothing heavy: the CLI installs it before the config
is read.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The job was stopped by `signum`; the CLI exits with 128 + signum."""

    def __init__(self, signum: int, detail: str = ""):
        self.signum = signum
        self.detail = detail
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}" + (f"; {detail}" if detail else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The signal received so far (None when none) and whether stopping is deferred."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        if not (first and self.deferred):
            raise Interrupted(signum)

    def raise_if_requested(self, detail: str = "") -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, detail)


STOP = StopRequest()


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Route SIGTERM and SIGINT to `STOP` for the duration of a job."""
    previous: dict[int, Any] = {}
    STOP.signum, STOP.deferred = None, False
    for handled in HANDLED:
        previous[int(handled)] = signal.signal(handled, STOP.handle)
    try:
        yield STOP
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
