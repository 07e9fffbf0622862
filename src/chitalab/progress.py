"""Progress reporting: a tqdm bar on a terminal, a plain log line every `PLAIN_EVERY_S` seconds
otherwise (a log file or CI output gets no carriage returns)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
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
