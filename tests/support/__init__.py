"""Shared test helpers: where the real data and checkpoints are, markers that skip without
them, and how to run the CLI (imported as `from tests.support import ...`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chitalab.fisher import GradientSource
from chitalab.params import select_pruned
from chitalab.pruning import (
    ChitaBlockPruner,
    ChitaPruner,
    DrawKey,
    MagnitudePruner,
    MultiStagePruner,
    PruneContext,
    Pruner,
    SampleStream,
    WoodFisherPruner,
)
from chitalab.run.results import Evaluation, ReportKeys, Results, Seconds, Sparsity
from chitalab.solver import GLOBAL_TOP_K, IHT, ActiveSet, Backsolve, Solver, SparsityConstraint
from tests.extensions import ProjectedGradient

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "src" / "chitalab" / "conf"
# Absolute, so that the README's relative environment line (`CHITA_DATA_DIR=../shared/data`, from
# the clone) holds for a run started in another folder and for file URIs.
DATA_DIR = Path(os.environ.get("CHITA_DATA_DIR", REPO.parent / "shared" / "data")).absolute()
CHECKPOINT_DIR = Path(os.environ.get("CHITA_CHECKPOINT_DIR", REPO.parent / "shared" / "checkpoints")).absolute()
MLPNET_CHECKPOINT = CHECKPOINT_DIR / "mnist_25_epoch_93.97.ckpt"
RESNET20_CHECKPOINT = CHECKPOINT_DIR / "resnet20_cifar10.pth.tar"
CIFAR10_NPZ = DATA_DIR / "cifar10.npz"


def have_mnist() -> bool:
    raw = DATA_DIR / "MNIST" / "raw"
    return (raw / "t10k-labels-idx1-ubyte").is_file() or (raw / "t10k-labels-idx1-ubyte.gz").is_file()


needs_mnist = pytest.mark.skipif(
    not (have_mnist() and MLPNET_CHECKPOINT.is_file()),
    reason=f"real MNIST ({DATA_DIR}/MNIST/raw) or the MLPNet checkpoint ({MLPNET_CHECKPOINT}) is absent; "
    "set CHITA_DATA_DIR and CHITA_CHECKPOINT_DIR",
)

needs_cifar10 = pytest.mark.skipif(
    not (CIFAR10_NPZ.is_file() and RESNET20_CHECKPOINT.is_file()),
    reason=f"CIFAR-10 ({CIFAR10_NPZ}) or the ResNet20 checkpoint ({RESNET20_CHECKPOINT}) is absent; "
    "set CHITA_DATA_DIR and CHITA_CHECKPOINT_DIR",
)


def cli_command(*overrides: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `python run.py OVERRIDES` with progress bars off and
    no experiment logger (a later `logger=...` wins)."""
    env = dict(os.environ, CHITA_DATA_DIR=str(DATA_DIR), CHITA_CHECKPOINT_DIR=str(CHECKPOINT_DIR))
    env.setdefault("CHITA_CACHE_DIR", str(REPO / ".cache"))
    flags = [o for o in overrides if o.startswith("-")]
    settings = [o for o in overrides if not o.startswith("-")]
    return [sys.executable, str(REPO / "run.py"), *flags, "progress=false", "logger=none", *settings], env


HANG = 1800
"""Seconds after which a test's subprocess counts as hung (never a measure of speed: a loaded
machine may take many times the quiet one's time, and the test still passes)."""


def run_cli(*overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the command `python run.py OVERRIDES` (see `cli_command`) to the end, in this process:
    the same checks, Hydra composition, jobs, exit code, stdout and stderr as the real entry
    point, returned as `subprocess.run` would, without a fresh Python that imports torch from
    cold. What only a process shows (the real entry point's exit status, signals, packaging,
    what is imported when) goes through `run_entry_point` or `start_cli`."""
    from chitalab.__main__ import run

    cmd, env = cli_command(*overrides)
    return run_in_process(run, cmd, cwd or REPO, env)


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """`python -m MODULE ARGS` in this process (see `run_in_process`): MODULE's `main(argv)`, whose
    return value, when an int, is the exit code. For the report, export and benchmark commands."""
    loaded = importlib.import_module(module)
    cmd = [sys.executable, "-m", module.removesuffix(".__main__"), *args]
    env = dict(os.environ) if env is None else env
    return run_in_process(lambda: loaded.main(list(args)), cmd, cwd or REPO, env, argv=[str(loaded.__file__), *args])


def run_entry_point(*overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python run.py OVERRIDES` (see `cli_command`) to the end in a fresh process."""
    cmd, env = cli_command(*overrides)
    return subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=HANG)


def run_in_process(
    entry: Callable[[], object], cmd: list[str], cwd: Path, env: dict[str, str], argv: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Call `entry` as the process `cmd` would run: `argv` (default: `cmd[1:]`) as sys.argv,
    `env` as the environment and `cwd` as the working folder, its output captured, SystemExit
    and an uncaught exception turned into the exit status. Everything a run changes in this
    process (environment, folder, argv, logging handlers, Hydra's global state, the data set kept
    in memory) is put back afterwards, so the next run starts as a fresh process would."""
    from hydra.core.global_hydra import GlobalHydra

    from chitalab.data import images

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = cmd[1:] if argv is None else argv
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                returned = entry()
                code = returned if isinstance(returned, int) else 0
            except SystemExit as stop:  # what the process would have exited with
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except Exception:  # the process would have died with this traceback and status 1
                traceback.print_exc()
                code = 1
            finally:  # what the process's exit hooks do: W&B finishes writing its offline runs
                if "wandb" in sys.modules:
                    sys.modules["wandb"].teardown(exit_code=code)
    finally:
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        images.LOADED.clear()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return subprocess.CompletedProcess(cmd, code, out.getvalue(), err.getvalue())


def start_cli(*overrides: str, cwd: Path | None = None) -> subprocess.Popen:
    """Start `python run.py OVERRIDES` (see `cli_command`) without waiting; output to pipes."""
    cmd, env = cli_command(*overrides)
    return subprocess.Popen(cmd, cwd=cwd or REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


SYNTHETIC = ("model=tiny_mlp", "dataset=synthetic")
SWAPS_NOT_SECONDS = ("pruner.solver.time_budget_s=null", "pruner.solver.max_swaps=20")
"""Overrides that give CHITA's swap search (the default solver) a budget in swaps instead of
seconds: with its time budget, a loaded machine stops it earlier, and two runs that must agree
(caches on and off, resumed and uninterrupted) may not."""


class FirstSamples(SampleStream):
    """A sample stream that always returns the first `count` samples, so a test can compare a
    pruner with gradients computed on known samples; it still records the keys drawn."""

    def __init__(self, x: Tensor, y: Tensor):
        super().__init__(data=TensorSamples(x, y), seed=0)

    def draw(self, count: int, key: DrawKey) -> tuple[Tensor, Tensor]:
        self.drawn.append(key)
        return self.data.training_samples(torch.arange(count))


@dataclass
class TensorSamples:
    """Training samples held as two tensors (what a SampleStream draws from)."""

    x: Tensor
    y: Tensor

    @property
    def num_train(self) -> int:
        return len(self.x)

    def training_samples(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


def prune_context(model: nn.Module, x: Tensor, y: Tensor, constraint: SparsityConstraint = GLOBAL_TOP_K, **kwargs):
    """A PruneContext over all conv/linear weights of `model` (put in eval mode) whose samples
    are the first rows of (x, y), with the NLL loss of MLPNet unless `loss_fn` is given."""
    kwargs.setdefault("loss_fn", F.nll_loss)
    kwargs.setdefault("progress", False)
    return PruneContext(
        model=model.eval(), pruned=select_pruned(model), samples=FirstSamples(x, y), constraint=constraint, **kwargs
    )


def chita(solver: Solver | None = None, l2: float = 1e-4, **gradients) -> ChitaPruner:
    """A ChitaPruner with a backsolve solver by default and GradientSource(**gradients)."""
    return ChitaPruner(GradientSource(**gradients), solver or Backsolve(), l2=l2)


def write_results(
    folder: Path,
    pruner: dict,
    method: str,
    sparsity: float,
    seed: int,
    accuracy: float,
    ablation: dict | None = None,
    experiment: str | None = None,
    objective: float = 50.0,
    deploy: dict | None = None,
    pattern: dict | None = None,
) -> None:
    """A results.json for MLPNet/MNIST, one shot, as a run writes it (through the Results schema)."""
    folder.mkdir(parents=True)
    results = Results(
        model="mlpnet",
        dataset="mnist",
        schedule="oneshot",
        method=method,
        pruner=pruner,
        pattern=pattern or {"name": "GlobalTopK"},
        seed=seed,
        device="cpu",
        sparsity=Sparsity(requested=sparsity, measured=sparsity),
        num_pruned_weights=1000,
        num_nonzero=round(1000 * (1 - sparsity)),
        dense=Evaluation(test_acc=93.97, test_loss=0.2),
        pruned=Evaluation(test_acc=accuracy, test_loss=0.3),
        seconds=Seconds(fisher=0.5, solver=1.5, total=4.0),
        peak_memory_mb={"cpu_rss": 100.0, "cuda": None},
        solver={"objective": objective},
        report=ReportKeys(experiment=experiment, ablation=ablation or {}),
        deploy=deploy,
    )
    (folder / "results.json").write_text(results.to_json())


WANDB_BLOCK = 32768  # the offline run file is a LevelDB-style log: 32 KiB blocks of checksummed records


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (`run-*.wandb`), in the order written."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, pending, pos = [], b"", 7  # after the header: ":W&B", a 2-byte magic and the version
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            chunks.append(payload)
        elif kind in (2, 3):  # first, middle
            pending += payload
        elif kind == 4:  # last
            chunks.append(pending + payload)
            pending = b""
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


EVERY_SOLVER: dict[str, Solver] = {
    "active_set": ActiveSet(iterations=30),
    "iht": IHT(iterations=30),
    "iht_refit": IHT(iterations=30, refit=True),
    "backsolve": Backsolve(),
    "projected_gradient": ProjectedGradient(iterations=30),
}
"""Every solver a constraint test runs, by name: the project's, and one from outside src."""


def every_pruner(solvers: list[Solver], base_level: float | None = 0.3) -> list[Pruner]:
    """The pruners a constraint test runs (64 Fisher samples, blocks of 64): MP, CHITA with
    each of `solvers`, the block method, WoodFisher and, unless `base_level` is None, CHITA++
    in three stages from it."""
    gradients = GradientSource(n_samples=64)
    pruners: list[Pruner] = [
        MagnitudePruner(),
        *(ChitaPruner(gradients, solver) for solver in solvers),
        ChitaBlockPruner(gradients, block_size=64),
        WoodFisherPruner(gradients, block_size=64),
    ]
    if base_level is not None:
        pruners.append(MultiStagePruner(ChitaPruner(gradients, IHT(iterations=5)), num_stages=3, base_level=base_level))
    return pruners
