"""`python -m chitalab.export RUN_DIR --format sparse|onnx|deploy [--out PATH]` (also the
`chitalab-export` console script).

Reads the run folder once (results.json, pruned.pt, and .hydra/config.yaml through the
config reader `chitalab.run.config.read_saved_run`), rebuilds the model with the pruned
weights, and hands plain objects to the typed functions of this package:

* `sparse`: the compressed checkpoint (`RUN_DIR/pruned.sparse`), checked to load back
  bit for bit;
* `onnx`: `RUN_DIR/pruned.onnx`, checked with onnxruntime against PyTorch on test batches
  (`--check-batches N`, or `all` for the whole test set);
* `deploy`: the `deploy` block (nonzeros, MACs, checkpoint sizes, CPU latency) as
  `RUN_DIR/deploy.json`, which the report reads for runs whose results.json has none.

Bad input ends with one `error: ...` line and exit code 2; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from ..cli import EXIT_USER_ERROR, fail
from ..data import PruningDataModule
from ..errors import UserError
from ..models import ModelSpec, load_model
from ..outputs import atomic_write
from ..params import select_pruned

FORMATS = ("sparse", "onnx", "deploy")
DEFAULT_NAMES = {"sparse": "pruned.sparse", "onnx": "pruned.onnx", "deploy": "deploy.json"}
RESULTS, WEIGHTS, HYDRA_CONFIG = "results.json", "pruned.pt", Path(".hydra") / "config.yaml"
EXIT_CHECK_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one `error: ...` line (exit code 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        fail(message)
        raise SystemExit(EXIT_USER_ERROR)  # not reached: fail exits


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m chitalab.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder (results.json, pruned.pt, .hydra/config.yaml)")
    parser.add_argument("--format", required=True, help=f"one of: {', '.join(FORMATS)}")
    parser.add_argument(
        "--out", default=None, help="output file (default: RUN_DIR/" + "|".join(DEFAULT_NAMES.values()) + ")"
    )
    parser.add_argument("--check-batches", default="1", help="onnx: test batches to compare on, a number or 'all'")
    parser.add_argument("--atol", type=float, default=1e-4, help="onnx: largest allowed |output difference|")
    parser.add_argument("--latency", choices=("yes", "no"), default="yes", help="deploy: measure CPU latency")
    parser.add_argument("--threads", type=int, default=1, help="deploy: torch threads for the latency (default 1)")
    return parser


@dataclass
class RunFolder:
    """What a run folder holds, read once."""

    path: Path
    results: dict[str, Any]
    model: ModelSpec
    datamodule: PruningDataModule
    state: dict[str, Tensor]


def read_run(path: Path) -> RunFolder:
    from ..run.config import read_saved_run

    if not path.is_dir():
        raise UserError(f"run folder not found: {path} (give a folder written by run.py, with {RESULTS} and {WEIGHTS})")
    missing = [name for name in (RESULTS, WEIGHTS, str(HYDRA_CONFIG)) if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path} is not a finished run folder: {', '.join(missing)} missing")
    try:
        results = json.loads((path / RESULTS).read_text())
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file is the user's input problem
        raise UserError(f"cannot read the run in {path}: {err}") from None
    model, datamodule = read_saved_run(path / HYDRA_CONFIG, path)
    return RunFolder(path, results, model, datamodule, state)


class _NoRandomWeightWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "randomly initialised" not in record.getMessage()


def build_pruned_model(run: RunFolder) -> nn.Module:
    """The run's model with its pruned weights (no checkpoint is read: pruned.pt has them all)."""
    quiet = _NoRandomWeightWarning()
    models_log = logging.getLogger("chitalab.models")
    models_log.addFilter(quiet)
    try:
        net = load_model(run.model)
    finally:
        models_log.removeFilter(quiet)
    try:
        net.load_state_dict(run.state)
    except RuntimeError as err:
        raise UserError(f"{run.path / WEIGHTS} does not match the run's model: {err}") from None
    return net.eval()


def pruned_names(run: RunFolder, net: nn.Module) -> list[str]:
    return select_pruned(net, list(run.model.include), list(run.model.exclude)).names


def test_batches(run: RunFolder) -> Iterator[tuple[Tensor, Tensor]]:
    """The run's test set, batch by batch (data read as the run read it)."""
    run.datamodule.setup("test")
    yield from run.datamodule.test_dataloader()


def _limited(batches: Iterator[tuple[Tensor, Tensor]], count: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    for i, batch in enumerate(batches):
        if count is not None and i >= count:
            return
        yield batch


def export_sparse(run: RunFolder, out: Path) -> dict[str, Any]:
    from .sparse_format import load_sparse, save_sparse

    info = save_sparse(run.state, out)
    back = load_sparse(out)
    exact = back.keys() == run.state.keys() and all(_same_bits(back[k], v) for k, v in run.state.items())
    if not exact:
        out.unlink()
        raise RuntimeError(f"the sparse checkpoint did not load back exactly; {out} removed")
    dense = (run.path / WEIGHTS).stat().st_size
    return {
        "format": "sparse",
        "path": str(out),
        "bytes": info.bytes,
        "dense_bytes": dense,
        "ratio": info.bytes / dense,
        "encodings": info.encodings,
        "bit_exact": True,
    }


def _same_bits(a: Tensor, b: Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


def export_onnx_checked(run: RunFolder, out: Path, check_batches: int | None, atol: float) -> dict[str, Any]:
    from .onnx_export import check_onnx, export_onnx, require_onnxruntime

    require_onnxruntime()
    net = build_pruned_model(run)
    batches = test_batches(run)  # the data are read once
    first = next(batches)
    partial = out.with_name(out.name + ".checking")
    try:
        export_onnx(net, first[0][:2], partial)
        check = check_onnx(partial, net, _limited(itertools.chain([first], batches), check_batches))
        if check.max_abs_diff > atol:
            raise _CheckFailed(
                f"onnxruntime's outputs differ from PyTorch's by {check.max_abs_diff:.3g} (> --atol {atol:g}); "
                f"{out} not written"
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {"format": "onnx", "path": str(out), "bytes": out.stat().st_size, **check.to_dict()}


def export_deploy(run: RunFolder, out: Path, latency: bool, threads: int) -> dict[str, Any]:
    from .payoff import deploy_summary

    net = build_pruned_model(run)
    x, _ = next(test_batches(run))
    block = deploy_summary(net, pruned_names(run, net), x[:1], latency=latency, threads=threads)
    atomic_write(out, lambda partial: partial.write_text(json.dumps(block, indent=1) + "\n"))
    summary = {"format": "deploy", "path": str(out), "macs": block["macs"]["ratio"], **block["checkpoint_bytes"]}
    if block["latency"]:
        summary["latency_ms"] = {
            b: {k: v[k] for k in ("dense_ms", "sparse_ms", "fastest_ms")}
            for b, v in block["latency"]["batches"].items()
        }
    return summary


class _CheckFailed(Exception):
    """The exported file did not match PyTorch (not a user error: exit code 1)."""


def parse_check_batches(text: str) -> int | None:
    if text == "all":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UserError(f"--check-batches={text!r} is not allowed; give a positive integer or 'all'")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.format not in FORMATS:
            raise UserError(f"--format={args.format!r} is not allowed; choose one of: {', '.join(FORMATS)}")
        check_batches = parse_check_batches(args.check_batches)
        if args.threads < 1:
            raise UserError(f"--threads={args.threads} is not allowed; it must be an integer >= 1")
        run = read_run(Path(args.run_dir))
        out = Path(args.out) if args.out else run.path / DEFAULT_NAMES[args.format]
        if not out.parent.is_dir():
            raise UserError(f"--out={args.out!r}: folder {out.parent} does not exist")
        if args.format == "sparse":
            summary = export_sparse(run, out)
        elif args.format == "onnx":
            summary = export_onnx_checked(run, out, check_batches, args.atol)
        else:
            summary = export_deploy(run, out, args.latency == "yes", args.threads)
    except UserError as err:
        fail(str(err))
    except _CheckFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
