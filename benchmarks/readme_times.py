"""Re-measure the run times the README states, each command cold in a fresh process, and print
them beside the README's figure (issue 30: the defaults' figures were about 10x off).

    python -m benchmarks.readme_times --list            # the commands and the README's figures
    python -m benchmarks.readme_times                   # run all (about an hour on 2 cores)
    python -m benchmarks.readme_times --only main refusal_resnet50 tiny

Each row is one README claim: where it is, the command, and the seconds the README gives. The
wall time is the whole process (start-up, imports, data, work, writing); `results.json`'s
`seconds.total` is printed beside it when the run writes one. Paste the measured column into
the README (or docs/) with the machine's load, never the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Claim:
    name: str
    where: str  # the README section that states it
    overrides: tuple[str, ...]
    readme_s: float | None  # None: the README says "seconds" or "at once" without a figure
    expect_exit: int = 0


CLAIMS = (
    Claim("main", "Quick start: about 24 s on 2 CPU cores", (), 24),
    Claim(
        "main_backsolve",
        "Quick start: the 2.5-second path",
        ("pruner/solver=backsolve", "pruner.l2=1e-4"),
        2.5,
    ),
    Claim("tiny", "Quick start: a smoke run on synthetic data (seconds)", ("model=tiny_mlp",), None),
    Claim(
        "refusal_resnet50",
        "Usage: without an ImageNet folder ... stops at once",
        ("pruner=chita", "sparsity=0.9", "model=resnet50", "paths.data_dir={tmp}/no_data"),
        2,
        expect_exit=2,
    ),
    Claim("refusal_value", "Usage: sparsity=-0.1 is refused in 0.4-0.6 s", ("sparsity=-0.1",), 0.6, expect_exit=2),
    Claim("chitapp", "CHITA++ and gradual pruning: 33-48 s at 0.9-0.98", ("pruner=chitapp", "sparsity=0.9"), 48),
    Claim(
        "gradual_fast",
        "CHITA++ and gradual pruning: gradual_fast took 75 s",
        ("schedule=gradual_fast", "sparsity=0.98"),
        75,
    ),
    Claim(
        "resnet50_block",
        "ResNet50 memory: finishes in 51 s on 2 idle cores",
        (
            "model=resnet50",
            "dataset=synthetic_imagenet",
            "pruner=chita_block",
            "sparsity=0.9",
            "pruner.gradients.n_samples=64",
        ),
        51,
    ),
)


def run(claim: Claim, tmp: Path) -> dict:
    """Run the claim's command cold; its wall seconds, exit code and results.json seconds."""
    out = tmp / claim.name
    overrides = [o.format(tmp=tmp) for o in claim.overrides]
    command = [sys.executable, str(REPO / "run.py"), "logger=none", "progress=false", *overrides]
    command.append(f"hydra.run.dir={out}")
    env = dict(os.environ)
    env.setdefault("CHITA_CACHE_DIR", str(tmp / "cache"))  # cold: no Fisher store or dense cache to reuse
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    results = out / "results.json"
    total = json.loads(results.read_text())["seconds"]["total"] if results.is_file() else None
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return {"wall_s": wall, "exit": done.returncode, "results_total_s": total, "last_line": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="claim names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    claims = [c for c in CLAIMS if not args.only or c.name in args.only]
    if args.list:
        for c in claims:
            print(f"{c.name:18} {c.readme_s!s:>6} s  python run.py {' '.join(c.overrides)}  ({c.where})")
        return
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'claim':18} {'README s':>9} {'wall s':>8} {'job s':>8} {'ratio':>6} exit")
    rows = []
    with tempfile.TemporaryDirectory(prefix="readme_times_") as tmp:
        for claim in claims:
            row = {"name": claim.name, "where": claim.where, "readme_s": claim.readme_s, **run(claim, Path(tmp))}
            rows.append(row)
            ratio = f"{row['wall_s'] / claim.readme_s:.1f}x" if claim.readme_s else "-"
            job = f"{row['results_total_s']:.1f}" if row["results_total_s"] is not None else "-"
            flag = (
                "" if row["exit"] == claim.expect_exit else f"  (expected exit {claim.expect_exit}: {row['last_line']})"
            )
            print(
                f"{claim.name:18} {claim.readme_s!s:>9} {row['wall_s']:8.1f} {job:>8} {ratio:>6} {row['exit']}{flag}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
