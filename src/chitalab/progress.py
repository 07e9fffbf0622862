"""Progress reporting: a tqdm bar on a terminal, a plain log line every `PLAIN_EVERY_S` seconds
otherwise (a log file or CI output gets no carriage returns). Phases without a loop of their
own to report on (a solve, a Lightning fit, an evaluation) get a `heartbeat`: off a terminal, a
line every `PLAIN_EVERY_S` seconds from a background thread while they run."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
PLAIN_EVERY_S = 30.0


def on_terminal() -> bool:
    """Whether stderr (where bars are drawn) is a terminal."""
    return sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, unit: str, enabled: bool = True) -> Iterable[T]:
    """`items`, reported as they are consumed: a bar on a terminal, periodic lines otherwise,
    nothing when not `enabled`."""
    if not enabled:
        return items
    if on_terminal():
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, unit=unit, leave=False)
    return plain_lines(items, desc, unit)


def plain_lines(items: Iterable[T], desc: str, unit: str) -> Iterator[T]:
    """`items`, with a log line `desc: i/total unit` after every `PLAIN_EVERY_S` seconds."""
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    last = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        if time.monotonic() - last >= PLAIN_EVERY_S:
            log.info("%s: %d%s %s", desc, done, f"/{total}" if total is not None else "", unit)
            last = time.monotonic()


@contextmanager
def heartbeat(
    desc: str, enabled: bool = True, status: Callable[[], str] | None = None, every_s: float | None = None
) -> Iterator[None]:
    """While the block runs, log `desc: still running after N s[, status()]` every `every_s`
    seconds (default `PLAIN_EVERY_S`), when `enabled` and stderr is not a terminal (where bars
    and the terminal's own liveliness do)."""
    if not enabled or on_terminal():
        yield
        return
    period = PLAIN_EVERY_S if every_s is None else every_s
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(period):
            try:
                extra = f", {status()}" if status is not None else ""
            except Exception:  # a status read mid-update: the line without it
                extra = ""
            log.info("%s: still running after %.0f s%s", desc, time.monotonic() - started, extra)

    thread = threading.Thread(target=beat, name="chitalab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
