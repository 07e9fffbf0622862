"""`chitalab-report FOLDER`: tables, figures and a summary from a folder of runs;
`load_runs(folder)`: its results.json files as a pandas DataFrame. Names are imported on first
use, so each pulls in only its own extra (matplotlib, pandas)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .build import build_report
    from .frame import load_runs

__all__ = ["build_report", "load_runs"]
__getattr__ = lazy_getattr(__name__, {"build_report": "build", "load_runs": "frame"})
