"""The `deploy` section: size, MACs and CPU latency of pruned models, dense against sparse.

Three models side by side in one process: the paper's MLPNet and ResNet20 (their
checkpoints when present, else random weights, said in the output) and a wide MLP
(784-4096-4096-4096-10, random weights: latency needs no trained weights) that reaches
layer sizes where sparse kernels can win. Each is pruned by global magnitude to each
sparsity (latency depends on the nonzero count and layout, not on the pruner). Then a
sweep of single layers with random masks gives the break-even sparsity per layer type.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from chitalab.export.latency import KERNELS, break_even, layer_sweep, linear_kernels, measure_latency
from chitalab.export.macs import measure_layer_macs, total_macs
from chitalab.export.sparse_format import dense_checkpoint_bytes, to_bytes
from chitalab.models import MLPNet, load_checkpoint, resnet20
from chitalab.params import select_pruned

from .workloads import CHECKPOINTS


def _checkpoint(name: str) -> Path:
    return Path(os.environ.get("CHITA_CHECKPOINT_DIR", "checkpoints")) / CHECKPOINTS[name]


@dataclass(frozen=True)
class DeployModel:
    name: str
    build: Callable[[], tuple[nn.Module, str]]  # the net and where its weights come from
    input_shape: tuple[int, ...]
    exclude: tuple[str, ...] = ()  # weight names not pruned (ResNet20's 1x1 shortcuts)
    # Random weights are pruned layer by layer: their scale differs by layer (1/sqrt(fan_in)),
    # so a global threshold would remove whole layers. Trained ones get global magnitude (MP).
    uniform: bool = False


def _checkpointed(name: str, build: Callable[[], nn.Module]) -> Callable[[], tuple[nn.Module, str]]:
    """`build()` with the paper's checkpoint for `name` when it is there, random weights otherwise."""

    def load() -> tuple[nn.Module, str]:
        net, path = build(), _checkpoint(name)
        if path.is_file():
            load_checkpoint(net, path)
            return net, f"checkpoint {path.name}"
        return net, "random weights (checkpoint absent)"

    return load


def _wide(width: int) -> Callable[[], tuple[nn.Module, str]]:
    def build() -> tuple[nn.Module, str]:
        torch.manual_seed(0)
        return MLPNet(784, (width, width, width), 10), "random weights"

    return build


def deploy_models(wide: int) -> list[DeployModel]:
    return [
        DeployModel("mlpnet", _checkpointed("mlpnet", MLPNet), (1, 28, 28)),
        DeployModel("resnet20", _checkpointed("resnet20", resnet20), (3, 32, 32), ("*downsample*",)),
        DeployModel(f"wide_mlp_3x{wide}", _wide(wide), (1, 28, 28), uniform=True),
    ]


def pruned_weight_names(net: nn.Module, exclude: Sequence[str]) -> list[str]:
    return select_pruned(net, ["*"], list(exclude)).names


def magnitude_prune(net: nn.Module, names: Sequence[str], sparsity: float, uniform: bool = False) -> None:
    """Magnitude pruning in place: the smallest `sparsity` fraction of |w| over `names`
    (global) or within each of them (`uniform`) set to 0."""
    params = dict(net.named_parameters())
    if uniform:
        for n in names:
            magnitude_prune(net, [n], sparsity)
        return
    flat = torch.cat([params[n].detach().abs().reshape(-1) for n in names])
    drop = int(sparsity * flat.numel())
    if drop == 0:
        return
    threshold = flat.kthvalue(drop).values
    with torch.no_grad():
        for n in names:
            params[n].masked_fill_(params[n].abs() <= threshold, 0.0)  # +0.0, as the pruners write it


def bench_deploy(
    sparsities: Sequence[float],
    batch_sizes: Sequence[int],
    repeats: int,
    budget_s: float,
    wide: int,
    sweep_sparsities: Sequence[float],
    sweep_layers: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
    log: Callable[[str], None],
    threads: int = 1,
) -> dict:
    """End-to-end and per-layer latency per model and sparsity, sizes and MACs, the layer
    sweeps with their break-even sparsities, and the linear kernels compared, all with
    `threads` torch threads."""
    models, rows, layer_rows = [], [], []
    for spec in deploy_models(wide):
        dense_net, source = spec.build()
        names = pruned_weight_names(dense_net, spec.exclude)
        models.append(
            {
                "model": spec.name,
                "source": source,
                "pruned_weights": sum(dict(dense_net.named_parameters())[n].numel() for n in names),
            }
        )
        x = torch.randn(1, *spec.input_shape)
        for sparsity in sparsities:
            log(f"deploy: {spec.name} at sparsity {sparsity}")
            net = copy.deepcopy(dense_net).eval()
            magnitude_prune(net, names, sparsity, spec.uniform)
            state = net.state_dict()
            macs = total_macs(measure_layer_macs(net, x, names))
            dense_bytes, sparse_bytes = dense_checkpoint_bytes(state), len(to_bytes(state))
            latency = measure_latency(net, names, x, batch_sizes, repeats, budget_s=budget_s, threads=threads)
            for batch, entry in latency["batches"].items():
                rows.append(
                    {
                        "model": spec.name,
                        "sparsity": sparsity,
                        "batch": int(batch),
                        "dense_ms": entry["dense_ms"],
                        "sparse_ms": entry["sparse_ms"],
                        "fastest_ms": entry["fastest_ms"],
                        "min_dense_ms": entry["min_ms"]["dense"],
                        "min_sparse_ms": entry["min_ms"]["sparse"],
                        "min_fastest_ms": entry["min_ms"]["fastest"],
                        "speedup_sparse": entry["speedup_sparse"],
                        "speedup_fastest": entry["speedup_fastest"],
                        "sparse_layers": f"{len(entry['sparse_layers_in_fastest'])}/{len(entry['layers'])}",
                        "macs_ratio": macs["sparse"] / macs["dense"],
                        "dense_bytes": dense_bytes,
                        "sparse_bytes": sparse_bytes,
                        "size_ratio": sparse_bytes / dense_bytes,
                        "rounds": entry["rounds"],
                    }
                )
                for layer in entry["layers"]:
                    layer_rows.append({"model": spec.name, "sparsity_target": sparsity, "batch": int(batch), **layer})
            del net
    sweeps = []
    for kind, shape, input_shape in sweep_layers:
        for batch in batch_sizes:
            log(f"deploy: sweep {kind} {shape} at batch {batch}")
            sweep = layer_sweep(
                kind, shape, (batch, *input_shape), sweep_sparsities, repeats, budget_s=budget_s / 4, threads=threads
            )
            sweeps.append(
                {
                    "kind": kind,
                    "shape": "x".join(map(str, shape)),
                    "input": "x".join(map(str, (batch, *input_shape))),
                    "batch": batch,
                    "break_even_sparsity": break_even(sweep),
                    "rows": sweep,
                }
            )
    largest = max((s for s in sweep_layers if s[0] == "linear"), key=lambda s: s[1][0] * s[1][1])[1]
    kernels = [linear_kernels(largest, 0.95, batch, repeats, threads=threads) for batch in batch_sizes]
    return {
        "threads": threads,
        "models": models,
        "rows": rows,
        "layers": layer_rows,
        "sweeps": sweeps,
        "linear_kernels": kernels,
        "kernels": KERNELS,
    }
