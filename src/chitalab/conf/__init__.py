"""The packaged Hydra config groups (Hydra's `pkg://chitalab.conf`)."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent
"""This folder on disk, for the checks that list group options before Hydra starts."""
