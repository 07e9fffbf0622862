"""Per-sample gradients of the pruned weights, stacked as the rows of G (the empirical Fisher).

Gradients come from torch.func: `vmap(grad(loss))` over mini-batches, with the model
called through `functional_call`, so one vectorised pass replaces n backward passes.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm

from .errors import UserError
from .params import PrunedParams

LossFn = Callable[[Tensor, Tensor], Tensor]
GIB = 1024**3


def fisher_bytes(n: int, p: int, dtype: torch.dtype, chunk_size: int) -> int:
    """Bytes needed to hold G (n x p) plus the float32 gradients of one chunk in flight."""
    return n * p * torch.empty((), dtype=dtype).element_size() + 2 * min(chunk_size, n) * p * 4


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: CUDA's free memory, or MemAvailable on Linux hosts."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fisher_memory(
    n: int, p: int, dtype: torch.dtype, chunk_size: int, device: torch.device, max_memory_gb: float | None
) -> int:
    """Refuse, before allocating, a G that would not fit; returns the estimate in bytes."""
    need = fisher_bytes(n, p, dtype, chunk_size)
    limit = max_memory_gb * GIB if max_memory_gb is not None else 0.8 * available_bytes(device)
    if need > limit:
        raise UserError(
            f"the Fisher gradients need about {need / GIB:.2f} GiB (n={n} x p={p} in {dtype}) but only "
            f"{limit / GIB:.2f} GiB may be used on {device}; lower pruner.n_samples or pruner.fisher_chunk_size, "
            "prune fewer layers (model.prune.include/exclude), or raise pruner.max_memory_gb"
        )
    return need


def collect_gradients(
    model: nn.Module,
    pruned: PrunedParams,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    mini_bsz: int = 1,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Tensor:
    """G (n x p) with n = len(x) // mini_bsz: row i is the gradient of the mean loss over
    samples [i·m, (i+1)·m), flattened in the order of `pruned`.

    The model must be in eval mode (BatchNorm running statistics, no dropout); it is not
    modified. `chunk_size` rows are computed per vectorised call, bounding activation memory.
    """
    if model.training:
        raise ValueError("collect_gradients needs the model in eval mode")
    n = x.shape[0] // mini_bsz
    if n == 0:
        raise ValueError(f"need at least {mini_bsz} samples, got {x.shape[0]}")
    x = x[: n * mini_bsz].reshape(n, mini_bsz, *x.shape[1:])
    y = y[: n * mini_bsz].reshape(n, mini_bsz)
    pruned_names = set(pruned.names)
    weights = {name: p.detach() for name, p in zip(pruned.names, pruned.params)}
    frozen = {name: p.detach() for name, p in model.named_parameters() if name not in pruned_names}
    frozen.update(dict(model.named_buffers()))

    def batch_loss(w: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (w, frozen), (xb,)), yb)

    per_batch_grad = vmap(grad(batch_loss), in_dims=(None, 0, 0))
    device = pruned.params[0].device
    G = torch.empty(n, pruned.numel, dtype=dtype, device=device)
    starts = range(0, n, chunk_size)
    for start in tqdm(starts, desc="Fisher gradients", unit="chunk", disable=not progress, leave=False):
        stop = min(start + chunk_size, n)
        grads = per_batch_grad(weights, x[start:stop].to(device), y[start:stop].to(device))
        G[start:stop] = torch.cat([grads[name].reshape(stop - start, -1) for name in pruned.names], dim=1)
    return G


def check_finite_gradients(G: Tensor) -> None:
    """Refuse a G with NaN or inf entries, naming how many rows are affected."""
    bad_rows = int((~torch.isfinite(G)).any(dim=1).sum())
    if bad_rows:
        raise UserError(
            f"{bad_rows} of {G.shape[0]} Fisher gradients contain NaN or inf; the loss is not finite at "
            "these weights (check the checkpoint and the data normalisation)"
        )
