"""2:4 semi-structured sparsity (at most 2 nonzeros in every 4 consecutive input weights),
the pattern NVIDIA sparse tensor cores run at up to 2x dense speed.

On CUDA, `to_semi_structured` swaps the weights of 2:4 linear layers for
`torch.sparse.to_sparse_semi_structured` tensors (float16). Without a GPU the same
conversion is checked on the CPU through `compress_2_4` / `decompress_2_4`, which store
what the GPU format stores (the kept half of the values and a 2-bit position per value) and
give the weight back exactly. Every pruner produces the pattern with `pattern=nm` (n 2, m 4;
for linear layers its groups are these); `prune_2_4` makes one by magnitude, for tests and for
measuring the kernels. The CUDA path has not been run on a GPU here: it is unverified.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import UserError

GROUP, KEEP = 4, 2
MIN_ROWS, COL_MULTIPLE = 32, 64  # float16 shape rules of to_sparse_semi_structured (CUTLASS/cuSPARSELt)


def is_2_4(weight: Tensor) -> bool:
    """Whether every group of 4 consecutive weights along the input dimension has <= 2 nonzeros."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % GROUP:
        return False
    return bool(((flat != 0).view(flat.shape[0], -1, GROUP).sum(dim=2) <= KEEP).all())


def prune_2_4(weight: Tensor) -> Tensor:
    """`weight` with the 2 smallest-magnitude entries of each group of 4 set to zero."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % GROUP:
        raise ValueError(f"the input dimension ({flat.shape[1]}) must be a multiple of {GROUP}")
    groups = flat.reshape(flat.shape[0], -1, GROUP)
    keep = groups.abs().topk(KEEP, dim=2).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, keep, True)
    return (groups * mask).reshape(weight.shape)


def compress_2_4(weight: Tensor) -> tuple[Tensor, Tensor]:
    """The kept values (rows x cols/2) and their positions 0-3 within each group (uint8),
    in the layout of the GPU format (before its metadata bit-packing)."""
    if not is_2_4(weight):
        raise ValueError("weight is not 2:4 sparse")
    flat = weight.detach().reshape(weight.shape[0], -1)
    groups = flat.reshape(flat.shape[0], -1, GROUP)
    # positions of the (up to) 2 nonzeros per group, zeros padded in as kept entries if fewer
    score = (groups != 0).to(torch.int8) * 4 + torch.arange(GROUP - 1, -1, -1, dtype=torch.int8)
    positions = score.topk(KEEP, dim=2).indices.sort(dim=2).values
    values = groups.gather(2, positions)
    return values.reshape(flat.shape[0], -1), positions.to(torch.uint8).reshape(flat.shape[0], -1)


def decompress_2_4(values: Tensor, positions: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of `compress_2_4`."""
    rows = values.shape[0]
    out = torch.zeros(rows, values.shape[1] // KEEP, GROUP, dtype=values.dtype)
    out.scatter_(2, positions.view(rows, -1, KEEP).to(torch.int64), values.view(rows, -1, KEEP))
    return out.reshape(tuple(shape))


def semi_structured_compatible(linear: nn.Module) -> bool:
    """A linear layer whose weight is 2:4 and has a shape the float16 kernels accept."""
    if not isinstance(linear, nn.Linear):
        return False
    rows, cols = linear.weight.shape
    return rows % MIN_ROWS == 0 and cols % COL_MULTIPLE == 0 and is_2_4(linear.weight)


def to_semi_structured(
    net: nn.Module, weight_names: Sequence[str], device: str = "cuda"
) -> tuple[nn.Module, list[str]]:
    """A float16 copy of `net` on `device` whose compatible 2:4 linear layers hold
    semi-structured sparse weights; returns it and the converted weight names. Needs CUDA
    (unverified here: no GPU was available)."""
    if not torch.cuda.is_available():
        raise UserError("2:4 semi-structured kernels need a CUDA GPU, and none is available here")
    from torch.sparse import to_sparse_semi_structured

    out = copy.deepcopy(net).half().to(device).eval()
    converted = []
    for name in weight_names:
        module = out.get_submodule(name.removesuffix(".weight"))
        if semi_structured_compatible(module):
            assert isinstance(module, nn.Linear)
            module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
            converted.append(name)
    return out, converted


def semi_structured_latency(
    net: nn.Module, weight_names: Sequence[str], example_input: Tensor, batch: int = 64, repeats: int = 50
) -> dict[str, float | int]:
    """Median milliseconds of dense float16 against 2:4 semi-structured float16 on CUDA,
    interleaved, with CUDA synchronisation around each call (unverified here)."""
    sparse, converted = to_semi_structured(net, weight_names)
    dense = copy.deepcopy(net).half().cuda().eval()
    x = example_input[:1].expand(batch, *example_input.shape[1:]).contiguous().half().cuda()
    times: dict[str, list[float]] = {"dense": [], "semi_structured": []}
    with torch.no_grad():
        for _ in range(3):
            dense(x), sparse(x)
        for r in range(repeats):
            for name, model in (("dense", dense), ("semi_structured", sparse))[:: 1 if r % 2 else -1]:
                torch.cuda.synchronize()
                begin = time.perf_counter()
                model(x)
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - begin)
    dense_ms = 1e3 * float(torch.tensor(times["dense"]).median())
    sparse_ms = 1e3 * float(torch.tensor(times["semi_structured"]).median())
    return {
        "batch": batch,
        "converted_layers": len(converted),
        "dense_fp16_ms": dense_ms,
        "semi_structured_ms": sparse_ms,
        "speedup": dense_ms / sparse_ms,
    }
