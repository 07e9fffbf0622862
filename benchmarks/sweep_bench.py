"""A sweep over sparsities (`python run.py -m ... sparsity=a,b,...`) with the caches across jobs
on and off, side by side: wall time of each multirun, the hits the jobs' results.json report,
and whether both give the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = ("model=resnet20", "dataset=cifar10", "pruner=chita_block")
SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9)
# The quick sweep runs CHITA's default swap search, which stops after `time_budget_s` seconds per
# λ: on a loaded machine the two sweeps then stop after different numbers of swaps and disagree.
# A budget in swaps instead of seconds makes both do the same work, so `identical_results` holds
# at any load (and the smoke run stays short, as does one λ instead of the grid).
QUICK_SWEEP = (
    "model=tiny_mlp",
    "dataset=synthetic",
    "pruner.solver.time_budget_s=null",
    "pruner.solver.max_swaps=20",
    "pruner.l2=1e-4",
)
QUICK_SPARSITIES = (0.5, 0.7, 0.9)


def run_sweep(overrides: tuple[str, ...], sparsities: tuple[float, ...], caches: bool, folder: Path) -> dict:
    """One multirun in a fresh process with an empty cache folder; its wall time and jobs."""
    switch = "true" if caches else "false"
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        *overrides,
        f"sparsity={','.join(map(str, sparsities))}",
        f"cache.fisher={switch}",
        f"cache.dense={switch}",
        f"paths.cache_dir={folder / 'cache'}",
        f"hydra.sweep.dir={folder / 'runs'}",
        "deploy.latency=false",  # the deploy block's latency is per job and not what is compared
        "progress=false",
        "logger=none",
    ]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    jobs = []
    for path in sorted((folder / "runs").glob("*/results.json"), key=lambda p: int(p.parent.name)):
        r = json.loads(path.read_text())
        jobs.append(
            {
                "sparsity": r["sparsity"]["requested"],
                "pruned_acc": r["pruned"]["test_acc"],
                "objective": r["solver"].get("objective"),
                "fisher_store": r["solver"].get("fisher_store"),
                "dense_cached": r["dense"].get("cached", False),
                "seconds": r["seconds"]["total"],
            }
        )
    return {"command": "python " + " ".join(cmd[1:]), "load": load, "wall_seconds": wall, "jobs": jobs}


def bench_sweep(quick: bool, log) -> dict:
    """The sweep with caches off, then on (each from an empty cache), and their comparison."""
    overrides, sparsities = (QUICK_SWEEP, QUICK_SPARSITIES) if quick else (SWEEP, SPARSITIES)
    runs = {}
    for caches in (False, True):
        log(f"sweep with caches {'on' if caches else 'off'}")
        with tempfile.TemporaryDirectory() as folder:
            runs["on" if caches else "off"] = run_sweep(overrides, sparsities, caches, Path(folder))
    on, off = runs["on"], runs["off"]
    same = [
        (a["pruned_acc"], a["objective"]) == (b["pruned_acc"], b["objective"]) for a, b in zip(on["jobs"], off["jobs"])
    ]
    return {
        "sweep": " ".join(overrides),
        "sparsities": list(sparsities),
        "off": off,
        "on": on,
        "ratio": on["wall_seconds"] / off["wall_seconds"],
        "fisher_hits": sum(j["fisher_store"] == "hit" for j in on["jobs"]),
        "dense_hits": sum(j["dense_cached"] for j in on["jobs"]),
        "identical_results": all(same) and len(on["jobs"]) == len(off["jobs"]) == len(sparsities),
    }
