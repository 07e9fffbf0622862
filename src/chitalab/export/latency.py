"""CPU latency of a pruned model, dense against sparse execution, measured side by side.

Sparse execution keeps each pruned weight as a `torch.sparse_csr` matrix:
linear layers run `F.linear(x, W)` for one input row and `torch.sparse.mm(W, xᵀ)ᵀ` for
more (the faster of the two in each case on this machine: see `linear_kernels`), 2-D
convolutions run im2col (`F.unfold`) followed by one sparse product per sample. Timings interleave the variants in every round (so
other jobs on shared cores slow them alike), take the median, and use a fixed
`torch.set_num_threads`, which is recorded. `fastest` execution picks, per layer, the
variant that measured faster, so it is never slower than dense by more than the noise.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .macs import layer_kind, weight_of

log = logging.getLogger(__name__)


def to_csr(weight: Tensor) -> Tensor:
    """A detached CSR copy of a 2-D weight (torch's "beta" notice silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


KERNELS = {
    "linear": "F.linear(x, CSR W) for 1 row, torch.sparse.mm(CSR W, x^T)^T for more",
    "conv": "F.unfold (im2col) + torch.sparse.mm(CSR W, cols) per sample",
}


class SparseLinear(nn.Module):
    """A linear layer whose weight is a CSR matrix."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = to_csr(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        leading = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        # Which kernel for how many rows: the timings in benchmarks/README.md ("Sparse kernels")
        if rows.shape[0] == 1:  # one row: F.linear with the CSR weight (a CSR mat-vec)
            out = F.linear(rows, self.weight)
        else:  # several rows: torch.sparse.mm on the transposed batch
            out = torch.sparse.mm(self.weight, rows.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*leading, self.out_features)


class SparseConv2d(nn.Module):
    """A 2-D convolution (groups 1, zero padding) as im2col + a CSR matrix product."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not supports_sparse_conv(conv):
            raise ValueError("only 2-D convolutions with groups=1, zero padding and numeric padding")
        self.out_channels = conv.out_channels
        self.kernel_size = cast(tuple[int, int], conv.kernel_size)
        self.stride = cast(tuple[int, int], conv.stride)
        self.padding = cast(tuple[int, int], conv.padding)
        self.dilation = cast(tuple[int, int], conv.dilation)
        self.weight = to_csr(conv.weight.reshape(conv.out_channels, -1))
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # B, C·k·k, L
        out_h = (height + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        # one product per sample: each cols[b] is contiguous, whereas one product over the
        # whole batch first needs a transposed copy of cols (measured slower)
        out = torch.stack([torch.sparse.mm(self.weight, cols[b]) for b in range(batch)])
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1)
        return out.reshape(batch, self.out_channels, out_h, out_w)


def supports_sparse_conv(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def sparse_version(module: nn.Module) -> nn.Module | None:
    """The CSR counterpart of a linear or 2-D conv layer, or None when there is none."""
    if isinstance(module, nn.Linear):
        return SparseLinear(module)
    if supports_sparse_conv(module):
        assert isinstance(module, nn.Conv2d)
        return SparseConv2d(module)
    return None


def _module_name(weight_name: str) -> str:
    return weight_name.removesuffix(".weight").removesuffix("weight")


def sparsify(net: nn.Module, weight_names: Sequence[str]) -> nn.Module:
    """A copy of `net` in eval mode where each named weight's layer runs sparse (layers with
    no sparse counterpart stay dense)."""
    out = copy.deepcopy(net).eval()
    for weight_name in weight_names:
        name = _module_name(weight_name)
        module = out.get_submodule(name)
        replacement = sparse_version(module)
        if replacement is None:
            continue
        if not name:
            return replacement
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name), child, replacement)
    return out


@contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with `threads` torch threads (None: leave as is); yields the count."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def interleaved_medians(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 20,
    min_repeats: int = 3,
    budget_s: float | None = None,
    warmup: int = 1,
    deadline: float | None = None,
) -> tuple[dict[str, float], int]:
    """Median seconds of each function, timed round by round (all functions once per round,
    the order rotated each round); stops after `repeats` rounds, or after `min_repeats` once
    `budget_s` is spent, or after one round once `deadline` (a `time.perf_counter()` value, a
    hard limit) has passed. Returns the medians and the rounds done."""
    names = list(fns)
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                fns[name]()
        times: dict[str, list[float]] = {name: [] for name in names}
        started = time.perf_counter()
        rounds = 0
        while rounds < repeats:
            order = names[rounds % len(names) :] + names[: rounds % len(names)]
            for name in order:
                begin = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - begin)
            rounds += 1
            now = time.perf_counter()
            if budget_s is not None and rounds >= min_repeats and now - started > budget_s:
                break
            if deadline is not None and now > deadline:
                break
    last_times.clear()
    last_times.update(times)
    return {name: statistics.median(values) for name, values in times.items()}, rounds


last_times: dict[str, list[float]] = {}  # every timing of the latest `interleaved_medians` call


def _fastest_ms(name: str) -> float:
    """The fastest timing of `name` in the latest call, in ms (the least disturbed by other jobs)."""
    return _ms(min(last_times[name]))


def batch_of(example_input: Tensor, batch: int) -> Tensor:
    """`batch` copies of the first example (latency does not depend on the values)."""
    first = example_input[:1]
    return first.expand(batch, *first.shape[1:]).contiguous()


def layer_inputs(net: nn.Module, x: Tensor, weight_names: Sequence[str]) -> dict[str, Tensor]:
    """The input each named weight's layer receives in a forward pass of `x`."""
    captured: dict[str, Tensor] = {}
    handles = []
    for weight_name in weight_names:
        module = net.get_submodule(_module_name(weight_name))

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], name: str = weight_name) -> None:
            captured.setdefault(name, inputs[0].detach())

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _ms(seconds: float) -> float:
    return seconds * 1e3


def measure_latency(
    net: nn.Module,
    pruned_names: Sequence[str],
    example_input: Tensor,
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    budget_s: float | None = None,
    threads: int | None = 1,
    per_layer: bool = True,
) -> dict[str, Any]:
    """Dense, sparse (every pruned layer that has a sparse kernel) and fastest (per layer the
    faster of the two, by the per-layer timings) latency in milliseconds per batch, end to
    end and per pruned layer. `budget_s` is shared out over the batch sizes and measurements and
    is also a hard limit: once it is spent, a measurement stops after the round it is in (fewer
    rounds than `repeats`), the remaining layers are not timed one by one and the remaining
    batch sizes are skipped; the log says so, and the result records the rounds and skips."""
    started = time.perf_counter()
    deadline = None if budget_s is None else started + budget_s
    if budget_s is not None:
        log.info(
            "deploy latency: dense vs sparse at batch size(s) %s, within %.3g s (deploy.latency_budget_s)",
            ", ".join(map(str, batch_sizes)),
            budget_s,
        )
    net = net.eval()
    candidates = [n for n in pruned_names if sparse_version_exists(net.get_submodule(_module_name(n)))]
    sparse_net = sparsify(net, candidates)
    out: dict[str, Any] = {"threads": None, "kernels": KERNELS, "batches": {}}
    skipped: list[int] = []
    untimed: set[str] = set()
    fewest = repeats + 1
    share = None if budget_s is None else budget_s / (len(batch_sizes) * (2 if per_layer else 1))
    with num_threads(threads) as used:
        out["threads"] = used
        for batch in batch_sizes:
            if deadline is not None and time.perf_counter() > deadline:
                skipped.append(batch)
                continue
            x = batch_of(example_input, batch)
            layers = []
            chosen = list(candidates)
            if per_layer and candidates:
                inputs = layer_inputs(net, x, candidates)
                layer_budget = None if share is None else share / len(candidates)
                chosen = []
                for name in candidates:
                    if deadline is not None and time.perf_counter() > deadline:
                        untimed.add(name)  # not timed alone: it stays dense in the fastest model
                        continue
                    dense_layer = net.get_submodule(_module_name(name))
                    sparse_layer = sparse_net.get_submodule(_module_name(name))
                    xi = inputs[name]
                    medians, rounds = interleaved_medians(
                        {"dense": partial(dense_layer, xi), "sparse": partial(sparse_layer, xi)},
                        repeats,
                        budget_s=layer_budget,
                        deadline=deadline,
                    )
                    fewest = min(fewest, rounds)
                    kind = layer_kind(dense_layer)
                    layers.append(
                        {
                            "name": name,
                            "kind": kind,
                            "shape": list(weight_of(dense_layer).shape),
                            "input_shape": list(xi.shape),
                            "sparsity": float((weight_of(dense_layer) == 0).float().mean()),
                            "dense_ms": _ms(medians["dense"]),
                            "sparse_ms": _ms(medians["sparse"]),
                            "speedup": medians["dense"] / medians["sparse"],
                            "rounds": rounds,
                        }
                    )
                    if medians["sparse"] < medians["dense"]:
                        chosen.append(name)
            fastest_net = sparsify(net, chosen)
            medians, rounds = interleaved_medians(
                {"dense": partial(net, x), "sparse": partial(sparse_net, x), "fastest": partial(fastest_net, x)},
                repeats,
                budget_s=share,
                deadline=deadline,
            )
            fewest = min(fewest, rounds)
            out["batches"][str(batch)] = {
                "dense_ms": _ms(medians["dense"]),
                "sparse_ms": _ms(medians["sparse"]),
                "fastest_ms": _ms(medians["fastest"]),
                "min_ms": {name: _fastest_ms(name) for name in ("dense", "sparse", "fastest")},
                "speedup_sparse": medians["dense"] / medians["sparse"],
                "speedup_fastest": medians["dense"] / medians["fastest"],
                "sparse_layers_in_fastest": chosen,
                "rounds": rounds,
                "layers": layers,
            }
    seconds = time.perf_counter() - started
    out["budget"] = {
        "budget_s": budget_s,
        "seconds": seconds,
        "fewest_rounds": fewest if fewest <= repeats else None,
        "skipped_batches": skipped,
        "untimed_layers": len(untimed),
    }
    if budget_s is not None and (fewest < repeats or skipped or untimed):
        log.info(
            "deploy latency: %.3g s measured within a %.3g s budget (deploy.latency_budget_s): at least %s of %d "
            "rounds%s%s; raise the budget for steadier figures",
            seconds,
            budget_s,
            fewest if fewest <= repeats else 0,
            repeats,
            f", {len(untimed)} layer(s) not timed alone" if untimed else "",
            f", batch size(s) {', '.join(map(str, skipped))} skipped" if skipped else "",
        )
    return out


def sparse_version_exists(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or supports_sparse_conv(module)


def random_sparse_weight(shape: Sequence[int], sparsity: float, seed: int = 0) -> Tensor:
    """Gaussian weights with a uniformly random fraction `sparsity` set to zero."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(*shape, generator=gen)
    keep = round((1 - sparsity) * weight.numel())
    order = torch.randperm(weight.numel(), generator=gen)
    flat = weight.view(-1)
    flat[order[keep:]] = 0
    return weight


def layer_sweep(
    kind: str,
    shape: Sequence[int],
    input_shape: Sequence[int],
    sparsities: Sequence[float],
    repeats: int = 20,
    budget_s: float | None = None,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Dense vs sparse latency of one layer (`kind` linear: shape = (out, in); conv: (out, in,
    kh, kw) with padding kh // 2) over random masks of each sparsity."""
    rows = []
    x = torch.randn(*input_shape)
    with num_threads(threads) as used:
        for sparsity in sparsities:
            weight = random_sparse_weight(shape, sparsity)
            layer: nn.Module
            if kind == "linear":
                layer = nn.Linear(shape[1], shape[0], bias=False)
            else:
                layer = nn.Conv2d(shape[1], shape[0], shape[2], padding=shape[2] // 2, bias=False)
            with torch.no_grad():
                layer.weight.copy_(weight)
            sparse = sparse_version(layer)
            assert sparse is not None
            fns: dict[str, Callable[[], object]] = {"dense": partial(layer, x), "sparse": partial(sparse, x)}
            if kind == "conv":  # im2col alone: the floor of the sparse path
                fns["im2col"] = partial(F.unfold, x, shape[2], padding=shape[2] // 2)
            medians, rounds = interleaved_medians(fns, repeats, budget_s=budget_s)
            rows.append(
                {
                    "kind": kind,
                    "shape": "x".join(map(str, shape)),
                    "batch": input_shape[0],
                    "sparsity": sparsity,
                    "dense_ms": _ms(medians["dense"]),
                    "sparse_ms": _ms(medians["sparse"]),
                    "speedup": medians["dense"] / medians["sparse"],
                    "im2col_ms": _ms(medians["im2col"]) if "im2col" in medians else None,
                    "threads": used,
                    "rounds": rounds,
                }
            )
    return rows


def break_even(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The sparsity from which sparse stays faster than dense in a sweep (rows sorted by
    sparsity), interpolated in log(speedup) between the last slower and the first faster
    point; the lowest sparsity measured when sparse wins everywhere, None when it never wins
    at the highest."""
    ordered = sorted(rows, key=lambda r: r["sparsity"])
    if not ordered or ordered[-1]["speedup"] <= 1:
        return None
    first = len(ordered) - 1
    while first > 0 and ordered[first - 1]["speedup"] > 1:
        first -= 1
    if first == 0:
        return float(ordered[0]["sparsity"])
    lo, hi = ordered[first - 1], ordered[first]
    a, b = torch.tensor([lo["speedup"], hi["speedup"]]).log().tolist()
    t = (0 - a) / (b - a) if b != a else 0.0
    return float(lo["sparsity"] + t * (hi["sparsity"] - lo["sparsity"]))


def linear_kernels(
    shape: Sequence[int], sparsity: float, batch: int, repeats: int = 20, threads: int | None = 1
) -> dict:
    """Median milliseconds of the candidate linear kernels for one layer: dense `F.linear`,
    `torch.sparse.mm(CSR W, xᵀ)ᵀ` (what `SparseLinear` uses), and `F.linear(x, CSR W)`."""
    weight = random_sparse_weight(shape, sparsity)
    csr = to_csr(weight)
    x = torch.randn(batch, shape[1])
    with num_threads(threads) as used:
        medians, rounds = interleaved_medians(
            {
                "dense F.linear": lambda: F.linear(x, weight),
                "sparse.mm(CSR, x^T)^T": lambda: torch.sparse.mm(csr, x.t()).t(),
                "F.linear(x, CSR)": lambda: F.linear(x, csr),
            },
            repeats,
        )
    return {
        "shape": "x".join(map(str, shape)),
        "sparsity": sparsity,
        "batch": batch,
        "threads": used,
        "rounds": rounds,
        **{f"{name} ms": _ms(value) for name, value in medians.items()},
    }
