"""results.json's provenance block: the weights, the data, the code and the libraries of a run."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..models import ModelSpec
from ..models.safe_load import sha256
from .results import Provenance

LIBRARIES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "timm")


def code_version() -> str:
    """The git commit of the checkout chitalab runs from (`+dirty` with uncommitted changes to
    tracked files), else the installed package's version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"chitalab {__version__}"
    return f"git {commit}{'+dirty' if dirty else ''}"


def library_versions() -> dict[str, str]:
    """Python's and the installed versions of the libraries a result depends on (without importing them)."""
    versions = {"python": platform.python_version(), "chitalab": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def provenance(model: ModelSpec, data_source: str) -> Provenance:
    """The provenance of a run of `model` on data read from `data_source`, stamped now (when
    the results are written)."""
    checkpoint = Path(model.checkpoint) if model.checkpoint else None
    timm_config = getattr(model.net, "pretrained_cfg", None) or {}
    timm_name = ".".join(part for part in (timm_config.get("architecture"), timm_config.get("tag")) if part)
    return Provenance(
        checkpoint=str(checkpoint.resolve()) if checkpoint else None,
        checkpoint_sha256=sha256(checkpoint) if checkpoint and checkpoint.is_file() else None,
        pretrained=f"timm {timm_name or model.name}" if model.pretrained else None,
        data_source=data_source,
        code_version=code_version(),
        versions=library_versions(),
        time_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=socket.gethostname() or sys.platform,
    )
