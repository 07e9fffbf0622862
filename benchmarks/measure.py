"""Timing and peak memory on CPU or CUDA, the machine's description, and log-log fits."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

GIB = 1024**3


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a wall-clock reading covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """fn() and its wall-clock seconds, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def best_of(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Fastest of `repeats` timed calls: the least disturbed by other jobs on shared cores."""
    return min(timed(fn, device)[1] for _ in range(repeats))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@dataclass
class Peak:
    """Peak memory of a measured block: `peak_gib` at its highest, `start_gib` when it began."""

    start_gib: float = 0.0
    peak_gib: float = 0.0

    @property
    def added_gib(self) -> float:
        return self.peak_gib - self.start_gib


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Peak]:
    """Peak memory while the block runs. CPU: the process's resident set size, its high-water
    mark (VmHWM) reset on entry through /proc/self/clear_refs, so earlier cases do not count.
    CUDA: torch's allocated bytes (max_memory_allocated after reset_peak_memory_stats)."""
    peak = Peak()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        peak.start_gib = torch.cuda.memory_allocated(device) / GIB
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak.start_gib = _status_kib("VmRSS") * 1024 / GIB
    try:
        yield peak
    finally:
        if device.type == "cuda":
            synchronize(device)
            peak.peak_gib = torch.cuda.max_memory_allocated(device) / GIB
        else:
            peak.peak_gib = _status_kib("VmHWM") * 1024 / GIB


def memory_kind(device: torch.device) -> str:
    """What `peak_memory` measures on `device`, for the tables' captions."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated"
    return (
        "process resident set: peak_gib = VmHWM (reset per case), added_peak_gib = VmHWM minus the resident "
        "size when the case began (memory the allocator kept from earlier cases can hide part of a case's growth)"
    )


def machine(device: torch.device) -> dict:
    """Where the figures come from."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fitted_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(size)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(t) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
