"""`python -m chitalab.report FOLDER`: tables, figures and a summary from a folder of runs."""

from .build import build_report

__all__ = ["build_report"]
