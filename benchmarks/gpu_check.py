"""CPU against CUDA on three jobs, side by side: the MLPNet default (CHITA, swap search, l2 auto),
the ResNet20 block search, and the ResNet50 block search on synthetic ImageNet.

    python -m benchmarks.gpu_check [--out outputs/gpu_check] [--jobs mlpnet,resnet20,resnet50]

Each job runs twice in a fresh process, `trainer.accelerator=cpu` and then `=cuda`, with the
caches off (both runs cold) and no logger; printed per job: wall seconds of each, the Fisher and
solver seconds from results.json, the pruned accuracies, and whether the two pruned models keep
the same support (the solvers compute in float64 on both devices, so a different support means
different rounding decided a near-tie; the count of differing weights is printed). Needs a CUDA
device; it never runs in the tests. Directories come from CHITA_DATA_DIR / CHITA_CHECKPOINT_DIR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from .tables import format_table

JOBS = {
    "mlpnet": [],
    "resnet20": ["model=resnet20", "dataset=cifar10", "pruner=chita_block", "pruner/search=swap", "sparsity=0.7"],
    "resnet50": [
        "model=resnet50",
        "dataset=synthetic_imagenet",
        "pruner=chita_block",
        "pruner/search=swap",
        "pruner.gradients.n_samples=256",
        "pruner.gradients.max_memory_gb=6",
        "pruner.ridge_choice.samples=64",
    ],
}
COMMON = ["cache.fisher=false", "cache.dense=false", "logger=none", "deploy.latency=false", "progress=false"]


def run_job(name: str, accelerator: str, out: Path) -> dict:
    """One job in a fresh process; its results.json, pruned support and wall seconds."""
    folder = out / f"{name}_{accelerator}"
    command = [sys.executable, "run.py", *JOBS[name], *COMMON, f"trainer.accelerator={accelerator}"]
    command.append(f"hydra.run.dir={folder}")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    results = json.loads((folder / "results.json").read_text())
    state = torch.load(folder / "pruned.pt", map_location="cpu", weights_only=True)
    support = torch.cat([v.flatten() != 0 for v in state.values() if v.is_floating_point()])
    return {"wall_s": wall, "results": results, "support": support}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/gpu_check")
    parser.add_argument("--jobs", default=",".join(JOBS))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    rows = []
    for name in args.jobs.split(","):
        cpu, cuda = (run_job(name, accelerator, Path(args.out)) for accelerator in ("cpu", "cuda"))
        rows.append(
            {
                "job": name,
                "cpu_wall_s": cpu["wall_s"],
                "cuda_wall_s": cuda["wall_s"],
                "cpu_solve_s": cpu["results"]["seconds"].get("solver"),
                "cuda_solve_s": cuda["results"]["seconds"].get("solver"),
                "cpu_fisher_s": cpu["results"]["seconds"].get("fisher"),
                "cuda_fisher_s": cuda["results"]["seconds"].get("fisher"),
                "cpu_acc": cpu["results"]["pruned"].get("test_acc"),
                "cuda_acc": cuda["results"]["pruned"].get("test_acc"),
                "same_support": bool(torch.equal(cpu["support"], cuda["support"])),
                "support_differs_at": int((cpu["support"] != cuda["support"]).sum()),
            }
        )
        print(format_table("CPU against CUDA", rows[-1:], list(rows[-1])), flush=True)
    print(format_table("CPU against CUDA", rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
