"""Per-sample weight gradients from layer inputs and output gradients, in one batched pass.

For a linear or convolutional layer, the gradient of one sample's loss with respect to the
weight is a product of what the layer saw (its input) and the gradient at its output. One
ordinary forward pass records the inputs, one backward pass to the layer outputs gives the
output gradients (no weight gradient is formed), and one batched product per layer turns both
into every row of G at once. Averaging over a mini-batch of m samples is folded in: the m
samples of a row share its summation index (linear), or form the batch of a convolution whose
groups are the rows (convolution). Its cost against one batched gradient and against
`torch.func`'s vmap is measured in docs/benchmarks.md (the `fisher` section); vmap stays the path
for layers without a rule here (`gradients.collect_gradients`).

The loss function must be the mean of per-sample losses over the batch (cross-entropy, NLL),
and the model in eval mode, so that the samples of a batch do not interact. Only plain
`nn.Linear` and `nn.Conv2d` modules have rules (a subclass may use its weight differently).
The first chunk of every collection is checked against ordinary autograd (its rows must add up
to the batched weight gradient of the same pass, and the loss must be a batch mean): a model
where the rules do not hold (a weight also used outside its layer's call, a loss that is not a
batch mean) is caught there and handed to the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]
ChunkGradients = Callable[[Tensor, Tensor], list[Tensor]]
"""(x, y) of shape (rows, m, ...) and (rows, m) -> per-row gradients of each tensor, (rows, *shape)."""
Layer = nn.Linear | nn.Conv2d


def has_rule(module: nn.Module, attribute: str) -> bool:
    """Whether the per-sample gradient of `module.<attribute>` has a rule here: the weight of
    a plain Linear layer, or of a plain Conv2d with zero padding given as numbers."""
    if attribute != "weight":
        return False
    if type(module) is nn.Linear:
        return True
    return type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def owners(model: nn.Module, names: Sequence[str]) -> list[Layer] | None:
    """The module owning each parameter `names[i]`, or None when one of them has no rule."""
    modules = []
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        if not isinstance(module, Layer) or not has_rule(module, attribute):
            return None
        modules.append(module)
    return modules


def row_gradients(module: Layer, inputs: Tensor, output_grads: Tensor, rows: int) -> Tensor:
    """(rows, *weight.shape): per-row weight gradients of `module`, the batch being `rows`
    consecutive groups of equally many samples (the mini-batches averaged into one row)."""
    if isinstance(module, nn.Linear):
        a = inputs.reshape(rows, -1, module.in_features)
        g = output_grads.reshape(rows, -1, module.out_features)
        if a.shape[1] == 1:
            # One sample per row: outer products, laid out rows-last (a permuted view), so that
            # copying them into the column-major G reads and writes contiguous runs of rows.
            # (Contiguous factors: an elementwise product takes its output layout from them.)
            return (g[:, 0].T.contiguous()[:, None, :] * a[:, 0].T.contiguous()[None, :, :]).permute(2, 0, 1)
        return torch.einsum("rto,rti->roi", g, a)
    assert isinstance(module, nn.Conv2d)
    # The grouped-convolution trick: the rows become groups of one convolution (rows·groups
    # groups, the row's samples its batch), whose weight gradient is then every row's own.
    out_channels, in_per_group, kh, kw = module.weight.shape
    per_row = inputs.shape[0] // rows

    def rows_as_channels(t: Tensor) -> Tensor:
        t = t.reshape(rows, per_row, *t.shape[1:]).transpose(0, 1)
        return t.reshape(per_row, rows * t.shape[2], *t.shape[3:])

    shape = (rows * out_channels, in_per_group, kh, kw)
    _, weight_grad, _ = torch.ops.aten.convolution_backward(
        rows_as_channels(output_grads),
        rows_as_channels(inputs),
        module.weight.new_empty(shape),  # only its shape is read for the weight gradient
        None,
        list(module.stride),
        list(module.padding),
        list(module.dilation),
        False,
        [0, 0],
        rows * module.groups,
        [False, True, False],
    )
    return weight_grad.reshape(rows, out_channels, in_per_group, kh, kw)


@dataclass
class Call:
    """One call of a layer during the forward pass: its input and output, with their version
    counters (an in-place change to either is then detected)."""

    inputs: Tensor
    input_version: int
    output: Tensor
    output_version: int

    def input_changed(self) -> bool:
        return self.inputs._version != self.input_version

    def output_changed(self) -> bool:
        return self.output._version != self.output_version


@contextmanager
def recording(modules: Sequence[Layer], copy_outputs: bool) -> Iterator[list[list[Call]]]:
    """Record every call of each module during a forward pass. With `copy_outputs`, the model
    goes on with a copy of each output, so that an in-place operation after the layer
    (ReLU(inplace=True)) leaves the recorded output, whose gradient is asked for, intact."""
    calls: list[list[Call]] = [[] for _ in modules]

    def hook_for(i: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            calls[i].append(Call(args[0].detach(), args[0]._version, output, output._version))
            return output.clone() if copy_outputs else None

        return hook

    handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(modules)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def weights_requiring_grad(modules: Sequence[Layer]) -> Iterator[None]:
    """The modules' weights require grad for the duration (so their outputs are in the graph)."""
    before = [m.weight.requires_grad for m in modules]
    for m in modules:
        m.weight.requires_grad_(True)
    try:
        yield
    finally:
        for m, flag in zip(modules, before):
            m.weight.requires_grad_(flag)


class LayerGradients:
    """Per-row weight gradients of `modules` (Linear/Conv2d layers of `model`, see `owners`),
    called with x of shape (rows, m, ...) and y of shape (rows, m): a list of (rows, *shape)
    tensors, one per module, each row the gradient of the mean loss over its m samples.

    Outputs are recorded in place (no copy) until a forward pass changes one in place; from
    then on they are copied (`copy_outputs`). The first call is checked against autograd (see
    `gradients`); if it fails, this and every later call go to `fallback` (None: an error)."""

    def __init__(
        self, model: nn.Module, modules: Sequence[Layer], loss_fn: LossFn, fallback: ChunkGradients | None = None
    ):
        self.model, self.modules, self.loss_fn = model, list(modules), loss_fn
        self.unique = list(dict.fromkeys(self.modules))
        self.fallback = fallback
        self.copy_outputs = False
        self.checked = False
        self.use_fallback = False

    def __call__(self, x: Tensor, y: Tensor) -> list[Tensor]:
        if self.use_fallback:
            assert self.fallback is not None
            return self.fallback(x, y)
        rows = x.shape[0]
        batch_x, batch_y = x.reshape(-1, *x.shape[2:]), y.reshape(-1)
        result = self.gradients(batch_x, batch_y, rows, check=not self.checked)
        if result is None:
            self.copy_outputs = True
            result = self.gradients(batch_x, batch_y, rows, check=not self.checked)
            assert result is not None
        grads, consistent = result
        if not self.checked:
            self.checked = True
            if not consistent:
                if self.fallback is None:
                    raise ValueError(
                        "gradients.method=hooks: the layer rules disagree with autograd on this model (a weight "
                        "used outside its layer's call, or a loss that is not a batch mean); use gradients.method=vmap"
                    )
                log.warning("per-sample gradients: the layer rules disagree with autograd here; using torch.func")
                self.use_fallback = True
                return self.fallback(x, y)
        return [grads[m] for m in self.modules]

    def gradients(self, x: Tensor, y: Tensor, rows: int, check: bool) -> tuple[dict[Layer, Tensor], bool] | None:
        """The rows' gradients per module, and (with `check`) whether the rules hold on this
        batch: the loss is a batch mean, and the rows add up to autograd's weight gradient of
        the same forward pass (so float rounding, not a different batch, is all that differs).
        None when an output was changed in place (and outputs were not copied)."""
        weights = [m.weight for m in self.unique] if check else []
        with (
            torch.enable_grad(),
            weights_requiring_grad(self.unique),
            recording(self.unique, self.copy_outputs) as calls,
        ):
            logits = self.model(x)
            # The sum over rows of each row's mean loss: loss_fn averages over the whole batch.
            total = self.loss_fn(logits, y) * rows
            for module, per_module in zip(self.unique, calls):
                if any(call.input_changed() for call in per_module):
                    raise RuntimeError(
                        f"the input of {type(module).__name__} was changed in place after the layer read it; "
                        "use gradients.method=vmap for this model"
                    )
            if any(call.output_changed() for per_module in calls for call in per_module):
                return None
            outputs = [call.output for per_module in calls for call in per_module]
            wanted = torch.autograd.grad(total, outputs + weights, allow_unused=True)
            output_grads = iter(wanted[: len(outputs)])
        consistent = not check or self.loss_is_batch_mean(logits.detach(), y, rows)
        grads: dict[Layer, Tensor] = {}
        with torch.no_grad():
            for module, per_module in zip(self.unique, calls):
                for call in per_module:  # a module called more than once adds up its calls
                    g = next(output_grads)
                    if g is None:
                        continue
                    row_grads = row_gradients(module, call.inputs, g, rows)
                    grads[module] = grads[module] + row_grads if module in grads else row_grads
        for module in self.unique:  # a layer the loss does not depend on
            if module not in grads:
                grads[module] = torch.zeros(rows, *module.weight.shape, dtype=module.weight.dtype, device=x.device)
        for module, batched in zip(self.unique, wanted[len(outputs) :]):
            reference = torch.zeros_like(module.weight) if batched is None else batched
            scale = float(reference.abs().max()) or 1.0
            consistent = consistent and torch.allclose(
                grads[module].sum(dim=0), reference, rtol=1e-3, atol=1e-4 * scale
            )
        return grads, consistent

    def loss_is_batch_mean(self, logits: Tensor, y: Tensor, rows: int) -> bool:
        """Whether the loss of the batch is the sample-weighted mean of its two halves' losses
        (a split at a row boundary; true for mean reductions, false for sums)."""
        if rows < 2:
            return True
        half = rows // 2 * (len(y) // rows)
        whole, first, second = (
            float(self.loss_fn(logits, y)),
            float(self.loss_fn(logits[:half], y[:half])),
            float(self.loss_fn(logits[half:], y[half:])),
        )
        mean = (half * first + (len(y) - half) * second) / len(y)
        return abs(whole - mean) <= 1e-4 * max(abs(whole), abs(mean), 1e-12)
