"""Writing a run's files so that a failed run leaves none half-written."""

from __future__ import annotations

import errno
import io
import os
import resource
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

RESULTS_FILE = "results.json"
WEIGHTS_FILE = "pruned.pt"


def save_torch(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)` through memory and one ordinary file write, so that a full disk is
    an OSError saying so (torch's own file writer reports it as `[enforce fail at
    inline_container.cc] unexpected pos ...`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())


def write_error(path: Path, err: BaseException) -> UserError:
    """One line for a failed write of `path`: the system's reason, and what to do about a full disk."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        reason += f" in {path.parent}; free some space there or write elsewhere (hydra.run.dir=...)"
    return UserError(f"cannot write {path}: {reason}")


def atomic_write(path: Path, write) -> None:
    """`write(partial)` then rename; a failed write (read-only folder, full disk) leaves no
    `.part` behind and is reported as a UserError naming the file."""
    partial = path.with_name(path.name + ".part")
    try:
        write(partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as err:  # torch.save reports some write errors as a RuntimeError
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        raise write_error(path, err) from None


def save_outputs(out_dir: Path, state_dict: dict, results_json: str) -> None:
    """Write pruned.pt (a plain state dict) and then results.json (`results_json`, the text of
    `chitalab.run.Results`), each atomically."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the run folder {out_dir}: {err.strerror or err}") from None
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda p: save_torch(cpu_state, p))
    atomic_write(out_dir / RESULTS_FILE, lambda p: p.write_text(results_json))


def dotted_keys(value: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested dicts as {"a.b": leaf} (a non-dict `value` is one leaf at `prefix`)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(dotted_keys(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def flatten_metrics(results: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as {"a/b": value}, for loggers."""
    flat: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def peak_memory_mb() -> dict[str, float | None]:
    """Peak resident memory of this process, and peak CUDA allocation when CUDA was used."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None
    return {"cpu_rss": rss, "cuda": cuda}
