"""What pruning buys at deployment, as one JSON-friendly `deploy` block per run, and the
W&B model artifact (the sparse checkpoint when it is the smaller file).

`deploy_summary` is a pure function of the pruned network: nonzeros, dense and sparse MACs
(measured by a forward pass), checkpoint bytes dense (`torch.save`, what `pruned.pt`
takes) against sparse (`sparse_format`), and optionally CPU latency at batch 1 and 64
(dense, sparse, and per layer the faster one) within a small time budget.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .latency import measure_latency
from .macs import measure_layer_macs, total_macs
from .sparse_format import SPARSE_FILE, dense_checkpoint_bytes, encodings_of, save_sparse, to_bytes

DENSE_FILE = "pruned.pt"  # chitalab.outputs.WEIGHTS_FILE


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no NaN or inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def deploy_summary(
    net: nn.Module,
    pruned_names: list[str],
    example_input: Tensor,
    latency: bool = False,
    batch_sizes: Sequence[int] = (1, 64),
    latency_budget_s: float = 2.0,
    threads: int | None = 1,
    per_layer: bool = True,
) -> dict[str, Any]:
    """The `deploy` block of results.json for a pruned `net` (measured on the CPU, in eval mode).

    `example_input`: one batch as the model takes it (its first sample is repeated to each
    batch size for latency). `latency=False` skips the timings (the cheap default);
    with it, about `latency_budget_s` seconds go to timing, with `threads` torch threads.
    A model on a GPU is measured on a CPU copy; `net` keeps its device and train/eval mode.
    """
    was_training = net.training
    if any(t.device.type != "cpu" for t in net.state_dict().values()):
        net = copy.deepcopy(net).cpu()  # the caller's model stays where it is
    example_input = example_input.cpu()
    try:
        return finite(
            _summary(net, pruned_names, example_input, latency, batch_sizes, latency_budget_s, threads, per_layer)
        )
    finally:
        net.train(was_training)


def _summary(
    net: nn.Module,
    pruned_names: list[str],
    example_input: Tensor,
    latency: bool,
    batch_sizes: Sequence[int],
    latency_budget_s: float,
    threads: int | None,
    per_layer: bool,
) -> dict[str, Any]:
    state = net.state_dict()
    params = dict(net.named_parameters())
    layers = measure_layer_macs(net, example_input, pruned_names)
    macs = total_macs(layers)
    pruned_total = sum(params[n].numel() for n in pruned_names)
    pruned_nonzero = sum(int((params[n] != 0).sum()) for n in pruned_names)
    dense_bytes = dense_checkpoint_bytes(state)
    sparse_bytes = len(to_bytes(state))
    block: dict[str, Any] = {
        "parameters": sum(p.numel() for p in params.values()),
        "nonzero_parameters": sum(int((p != 0).sum()) for p in params.values()),
        "pruned_weights": pruned_total,
        "nonzero_pruned_weights": pruned_nonzero,
        "macs": {
            "dense": macs["dense"],
            "sparse": macs["sparse"],
            "ratio": macs["sparse"] / macs["dense"] if macs["dense"] else None,
            "counted": "conv and linear weights, per sample",
            "layers": [layer.to_dict() for layer in layers],
        },
        "checkpoint_bytes": {
            "dense": dense_bytes,
            "sparse": sparse_bytes,
            "ratio": sparse_bytes / dense_bytes,
            "sparse_encodings": encodings_of(state),
        },
        "latency": None,
    }
    if latency:
        block["latency"] = measure_latency(
            net.eval(),
            pruned_names,
            example_input,
            batch_sizes,
            budget_s=latency_budget_s,
            threads=threads,
            per_layer=per_layer,
        )
    return block


@dataclass(frozen=True)
class LoggedModel:
    """What `log_model_artifact` logged."""

    path: Path  # the file in the artifact
    format: str  # "sparse" or "dense"
    bytes: int
    dense_bytes: int
    artifact: Any  # the wandb.Artifact


def log_model_artifact(
    target: Any,
    run_dir: str | Path,
    name: str = "pruned-model",
    aliases: Sequence[str] = ("latest",),
    metadata: Mapping[str, Any] | None = None,
) -> LoggedModel:
    """Log the run's model as a W&B artifact of type "model": `pruned.sparse` (written from
    `pruned.pt` when absent) when it is smaller than `pruned.pt`, else `pruned.pt`; `metadata`
    (e.g. the method and sparsity) joins the file's own.

    `target`: a Lightning `WandbLogger` (its `.experiment` is used) or a `wandb` run.
    """
    import torch
    import wandb

    run = target.experiment if not hasattr(target, "log_artifact") and hasattr(target, "experiment") else target
    run_dir = Path(run_dir)
    dense_path = run_dir / DENSE_FILE
    sparse_path = run_dir / SPARSE_FILE
    if not sparse_path.is_file():
        save_sparse(torch.load(dense_path, map_location="cpu", weights_only=True), sparse_path)
    dense_bytes, sparse_bytes = dense_path.stat().st_size, sparse_path.stat().st_size
    sparse_wins = sparse_bytes < dense_bytes
    path = sparse_path if sparse_wins else dense_path
    loader = (
        "chitalab.export.sparse_format.load_sparse(path) -> state dict"
        if sparse_wins
        else "torch.load(path, weights_only=True) -> state dict"
    )
    artifact = wandb.Artifact(
        name,
        type="model",
        description="pruned weights (" + ("sparse checkpoint" if sparse_wins else "dense state dict") + ")",
        metadata={
            "format": "sparse" if sparse_wins else "dense",
            "bytes": path.stat().st_size,
            "dense_bytes": dense_bytes,
            "sparse_bytes": sparse_bytes,
            "load_with": loader,
            **(metadata or {}),
        },
    )
    artifact.add_file(str(path))
    logged = run.log_artifact(artifact, aliases=list(aliases))
    return LoggedModel(path, "sparse" if sparse_wins else "dense", path.stat().st_size, dense_bytes, logged)
