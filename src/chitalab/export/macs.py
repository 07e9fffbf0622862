"""Multiply-accumulates of the conv and linear layers, measured with a forward pass.

Forward hooks record each layer's output size; a weight of a linear layer is used once
per output row (per token for sequence inputs), a weight of a convolution once per output
position. Dense MACs = weights x uses, sparse MACs = nonzero weights x uses. Other
operations (attention score products, normalisation, pooling, activations) are not
counted: they are not pruned and are small in the models here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import Tensor, nn

LAYER_TYPES: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv",
    nn.Conv2d: "conv",
    nn.Conv3d: "conv",
}


def weight_of(module: nn.Module) -> Tensor:
    """A conv or linear layer's weight tensor."""
    return cast(Tensor, module.weight)


def layer_kind(module: nn.Module) -> str | None:
    """ "linear", "conv", or None for any other module."""
    for cls, kind in LAYER_TYPES.items():
        if isinstance(module, cls):
            return kind
    return None


@dataclass(frozen=True)
class LayerMacs:
    """One conv/linear layer: its weights, nonzeros and MACs per sample (batch 1)."""

    name: str  # the weight's name, e.g. "fc1.weight"
    kind: str  # "linear" or "conv"
    pruned: bool  # whether the weight is among the pruned ones
    weights: int
    nonzero: int
    uses_per_weight: int  # output rows (linear) or output positions (conv) per sample
    dense_macs: int
    sparse_macs: int

    @property
    def sparsity(self) -> float:
        """The fraction of zeros among the layer's weights."""
        return 1 - self.nonzero / self.weights if self.weights else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "sparsity": self.sparsity}


def measure_layer_macs(net: nn.Module, example_input: Tensor, pruned_names: list[str] | None = None) -> list[LayerMacs]:
    """Per conv/linear layer, in forward order: MACs per sample from one forward pass of
    `example_input` (any batch size; figures are divided by it)."""
    batch = example_input.shape[0]
    uses: dict[str, int] = {}
    order: list[str] = []
    modules: dict[str, nn.Module] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: object, output: Tensor) -> None:
            out_units = weight_of(module).shape[0]
            per_sample = output.numel() // (batch * out_units)
            if name not in uses:
                order.append(name)
                uses[name] = 0
            uses[name] += per_sample  # a module called twice uses its weights twice

        return record

    for module_name, module in net.named_modules():
        if layer_kind(module) is not None:
            name = f"{module_name}.weight" if module_name else "weight"
            modules[name] = module
            handles.append(module.register_forward_hook(hook(name)))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(example_input)
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    pruned = set(pruned_names if pruned_names is not None else modules)
    layers = []
    for name in order:
        module = modules[name]
        weight = weight_of(module).detach()
        nonzero = int((weight != 0).sum())
        kind = layer_kind(module)
        assert kind is not None
        layers.append(
            LayerMacs(
                name=name,
                kind=kind,
                pruned=name in pruned,
                weights=weight.numel(),
                nonzero=nonzero,
                uses_per_weight=uses[name],
                dense_macs=weight.numel() * uses[name],
                sparse_macs=nonzero * uses[name],
            )
        )
    return layers


def total_macs(layers: list[LayerMacs]) -> dict[str, int]:
    """Dense and sparse MACs per sample, summed over the layers."""
    return {
        "dense": sum(layer.dense_macs for layer in layers),
        "sparse": sum(layer.sparse_macs for layer in layers),
    }
