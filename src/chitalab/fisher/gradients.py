"""Per-sample gradients of the pruned weights, stacked as the rows of G (the empirical Fisher).

Two methods give the same G: `hooks` (layer inputs and output gradients of one batched pass,
`fisher.hooks`: Linear and Conv2d weights) and `vmap` (torch.func's `vmap(grad(loss))` over
mini-batches through `functional_call`: any differentiable model, slower). `auto` takes hooks
when every differentiated tensor has a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ..errors import UserError
from ..params import PrunedParams
from ..progress import progress as progress_bar
from .hooks import ChunkGradients, LayerGradients, owners

LossFn = Callable[[Tensor, Tensor], Tensor]
METHODS = ("auto", "hooks", "vmap")


def activation_bytes(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of the loss on the batch
    (x, y), parameters excluded: the activation memory of one gradient row, measured by one
    forward pass."""
    counted = {p.data_ptr() for p in model.parameters()}
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        if t.data_ptr() not in counted:
            counted.add(t.data_ptr())
            total += t.nbytes
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(model(x), y)
    return total


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
    columns: tuple[int, int] | None = None,
    method: str = "auto",
) -> Tensor:
    """G (n x p, column-major) with n = len(x) // mini_bsz: row i is the gradient of the mean loss over
    samples [i·m, (i+1)·m), flattened in the order of `pruned`. With `columns` = (start, stop),
    only those columns of G are returned, and only the tensors they overlap are differentiated.

    The model must be in eval mode (BatchNorm running statistics, no dropout); it is not
    modified. `chunk_size` rows are computed per batched call, bounding activation memory.
    `method`: see the module docstring; `hooks` on a tensor without a rule is an error.
    """
    n = x.shape[0] // mini_bsz
    start_col, stop_col = columns or (0, pruned.numel)
    # Column-major (G stored as Gᵀ): the solvers' products over a support then read only its columns.
    G = torch.empty(stop_col - start_col, n, dtype=dtype, device=pruned.params[0].device).T
    for _ in gradient_chunks(model, pruned, loss_fn, x, y, mini_bsz, chunk_size, dtype, progress, columns, method, G):
        pass
    return G


def gradient_chunks(
    model: nn.Module,
    pruned: PrunedParams,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    mini_bsz: int = 1,
    chunk_size: int = 64,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    columns: tuple[int, int] | None = None,
    method: str = "auto",
    out: Tensor | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """The rows of `collect_gradients`' G, `chunk_size` at a time: (first row, rows x columns),
    written into the rows of `out` (G) when given, else into a new tensor per chunk."""
    if model.training:
        raise ValueError("collect_gradients needs the model in eval mode")
    n = x.shape[0] // mini_bsz
    if n == 0:
        raise ValueError(f"need at least {mini_bsz} samples, got {x.shape[0]}")
    x = x[: n * mini_bsz].reshape(n, mini_bsz, *x.shape[1:])
    y = y[: n * mini_bsz].reshape(n, mini_bsz)
    start_col, stop_col = columns or (0, pruned.numel)
    segments = pruned.segments(start_col, stop_col)
    chunk_grads = chunk_gradients(model, [pruned.names[i] for i, _, _ in segments], loss_fn, method)
    device = pruned.params[0].device
    starts = range(0, n, chunk_size)
    for start in progress_bar(starts, "Fisher gradients", "chunk", progress):
        stop = min(start + chunk_size, n)
        grads = chunk_grads(x[start:stop].to(device), y[start:stop].to(device))
        rows = (
            out[start:stop]
            if out is not None
            else torch.empty(stop - start, stop_col - start_col, dtype=dtype, device=device)
        )
        for (_, source, target), g in zip(segments, grads):
            rows[:, target] = g.reshape(stop - start, -1)[:, source]
        del grads  # freed before the next chunk is computed
        yield start, rows


def chunk_gradients(model: nn.Module, names: list[str], loss_fn: LossFn, method: str = "auto") -> ChunkGradients:
    """How a chunk of rows is differentiated with respect to the parameters `names`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    modules = owners(model, names) if method != "vmap" else None
    if modules is not None:
        return LayerGradients(
            model, modules, loss_fn, vmap_gradients(model, names, loss_fn) if method == "auto" else None
        )
    if method == "hooks":
        raise ValueError("gradients.method=hooks has no rule for some pruned tensors (Linear and Conv2d weights only)")
    return vmap_gradients(model, names, loss_fn)


def vmap_gradients(model: nn.Module, names: list[str], loss_fn: LossFn) -> ChunkGradients:
    """torch.func's per-row gradients: `vmap(grad(loss))` through `functional_call`."""
    params = dict(model.named_parameters())
    weights = {name: params[name].detach() for name in names}
    frozen = {name: p.detach() for name, p in params.items() if name not in weights}
    frozen.update(dict(model.named_buffers()))

    def batch_loss(w: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (w, frozen), (xb,)), yb)

    per_batch_grad = vmap(grad(batch_loss), in_dims=(None, 0, 0))

    def differentiate(x: Tensor, y: Tensor) -> list[Tensor]:
        grads = per_batch_grad(weights, x, y)
        return [grads[name] for name in names]

    return differentiate


def check_finite_gradients(G: Tensor) -> None:
    """Refuse a G with NaN or inf entries, naming how many rows are affected."""
    # Row extrema are NaN or infinite exactly when the row holds a NaN or an inf; unlike
    # isfinite(G), they need no temporary the size of G.
    bad_rows = int((~(torch.isfinite(G.amax(dim=1)) & torch.isfinite(G.amin(dim=1)))).sum())
    if bad_rows:
        raise UserError(
            f"{bad_rows} of {G.shape[0]} Fisher gradients contain NaN or inf; the loss is not finite at "
            "these weights (check the checkpoint and the data normalisation)"
        )
