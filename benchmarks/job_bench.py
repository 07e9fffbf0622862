"""The phases of one cold one-shot job (`python run.py ...` in a fresh process), read from
the job's own log timestamps and results.json, next to the floor of each phase where one
exists (measured here, warm, in this process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import torch

from chitalab.training.inference import evaluate_model

from .measure import best_of
from .workloads import load_workload

REPO = Path(__file__).resolve().parents[1]
JOBS = {
    "mlpnet": ("sparsity=0.9",),  # `python run.py`: CHITA (active set) at 0.9
    "resnet20": ("model=resnet20", "dataset=cifar10", "pruner=chita_block", "pruner.l2=1e-4", "sparsity=0.7"),
}
QUICK_JOBS = {"tiny_mlp": ("model=tiny_mlp", "dataset=synthetic")}
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[([\w.]+)\]\[\w+\] - (.*)$")
PHASES = ("start-up", "data", "re-estimation", "dense evaluation", "Fisher", "solve", "pruned evaluation", "writing")


def log_times(text: str) -> list[tuple[float, str, str]]:
    """(epoch seconds, logger, message) of each log line of a job."""
    out = []
    for line in text.splitlines():
        match = STAMP.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((stamp, match.group(2), match.group(3)))
    return out


def first(lines: list[tuple[float, str, str]], *needles: str) -> float:
    for stamp, name, message in lines:
        if any(n in f"{name} {message}" for n in needles):
            return stamp
    raise ValueError(f"no log line with {needles}")


def job_phases(overrides: tuple[str, ...], logger: str) -> dict:
    """Run one cold job; its phases in seconds (from the log and results.json)."""
    with tempfile.TemporaryDirectory() as folder:
        cold = ("cache.fisher=false", "cache.dense=false")  # a cold job: no work reused from earlier jobs
        cmd = [
            sys.executable,
            "run.py",
            *overrides,
            *cold,
            "progress=false",
            f"logger={logger}",
            f"hydra.run.dir={folder}",
        ]
        load = os.getloadavg()[0]
        started = time.time()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
        ended = time.time()
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
        results = json.loads((Path(folder) / "results.json").read_text())
    lines = log_times(done.stdout + "\n" + done.stderr)
    data_start = first(lines, "chitalab.run.job setting up")
    built = first(lines, "chitalab.run.job pruning ")
    dense = first(lines, "dense model:")
    pruned = first(lines, "pruned model:")
    fisher, solve = results["seconds"]["fisher"], results["seconds"]["solver"]
    bn_lines = [s for s, n, m in lines if "BatchNorm" in m]
    bn_end = max(bn_lines) if bn_lines else built
    phases = {
        "start-up": data_start - started,
        "data": built - data_start,
        "re-estimation": bn_end - built,
        "dense evaluation": dense - bn_end,
        "Fisher": fisher,
        "solve": solve,
        "pruned evaluation": max(pruned - dense - fisher - solve, 0.0),
        "writing": (ended - pruned),
    }
    return {
        "command": "python " + " ".join(cmd[1:-1]),
        "load": load,
        "wall_seconds": ended - started,
        "phases": phases,
        "dense_acc": results["dense"]["test_acc"],
        "pruned_acc": results["pruned"]["test_acc"],
    }


def startup_floor() -> float:
    """A fresh interpreter that imports torch and exits: no job starts faster."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def floors(name: str, n: int, bn_samples: int, device: torch.device) -> dict:
    """Forward passes at the better of two batch sizes, 128 and 1000 (evaluation over 10,000
    images, re-estimation over `bn_samples`), and one batched gradient of n samples (the
    Fisher's floor: a mini-batch backward, not n per-sample gradients)."""
    work = load_workload(name, n, device)
    model, x, y = work.model, work.x, work.y
    images = x.repeat((10_000 + len(x) - 1) // len(x), *([1] * (x.dim() - 1)))[:10_000]
    labels = y.repeat(10)[:10_000]
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())

    def forward_all(size: int) -> None:
        batches = [(images[i : i + size], labels[i : i + size]) for i in range(0, 10_000, size)]
        evaluate_model(model, batches, channels_last=conv)

    def batched_gradient():
        model.zero_grad()
        with torch.enable_grad():
            work.loss_fn(model(x), y).backward()

    forward = min(best_of(partial(forward_all, size), device, 2) for size in (128, 1000))
    return {
        "start-up": startup_floor(),
        "dense evaluation": forward,
        "pruned evaluation": forward,
        "re-estimation": forward * bn_samples / 10_000 if conv else None,
        "Fisher": best_of(batched_gradient, device, 2),
    }


def bench_jobs(quick: bool, device: torch.device, log) -> dict:
    """Each job once, cold, then the floors; rows of phase, seconds, floor."""
    jobs = QUICK_JOBS if quick else JOBS
    out = {}
    for name, overrides in jobs.items():
        log(f"job {name}")
        logger = "none" if quick or name != "mlpnet" else "wandb"  # `python run.py` logs to W&B offline
        result = job_phases(overrides, logger)
        floor = {} if quick else floors(name, 1000, 5000 if name == "resnet20" else 0, device)
        result["rows"] = [
            {"model": name, "phase": phase, "seconds": result["phases"][phase], "floor_seconds": floor.get(phase)}
            for phase in PHASES
        ]
        result["rows"].append(
            {"model": name, "phase": "total (wall)", "seconds": result["wall_seconds"], "floor_seconds": None}
        )
        out[name] = result
    return out
