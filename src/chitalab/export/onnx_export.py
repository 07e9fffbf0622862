"""ONNX export of a pruned model (dense weights, zeros included) and its check against
PyTorch with onnxruntime on real batches.

ONNX buys portability (onnxruntime, TensorRT, browsers, mobile runtimes), not size or speed
from unstructured sparsity: the weights are stored dense and onnxruntime's CPU kernels do
not skip zeros. The batch axis is dynamic, so any batch size runs. onnx and onnxruntime
are the optional `export` extra (`pip install -e ".[export]"`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError

OPSET = 17  # Conv, Gemm/MatMul, BatchNormalization, LogSoftmax, LayerNorm (ViT) are all in it
INPUT_NAME, OUTPUT_NAME = "input", "output"
INSTALL_HINT = "pip install 'chitalab[export]' (or: pip install onnx onnxruntime)"


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a UserError saying how to install it."""
    try:
        import onnx  # noqa: F401  (the exporter needs it too)
        import onnxruntime
    except ImportError as err:
        raise UserError(f"--format onnx needs onnx and onnxruntime ({err.name} is missing); {INSTALL_HINT}") from None
    return onnxruntime


def export_onnx(net: nn.Module, example_input: Tensor, path: str | Path, opset: int = OPSET) -> Path:
    """Write `net` (in eval mode) as ONNX with a dynamic batch axis, atomically
    (`PATH.part`, then renamed). Uses torch's TorchScript-based exporter, which needs no
    onnxscript."""
    require_onnxruntime()
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    net = net.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                net,
                (example_input,),
                str(partial),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime against PyTorch on the same batches."""

    samples: int
    max_abs_diff: float  # largest |output difference| over all samples and classes
    torch_accuracy: float  # percent
    onnx_accuracy: float
    same_predictions: int  # samples where both predict the same class

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime CPU session for the file."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(path: str | Path, net: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> OnnxCheck:
    """Run every (inputs, labels) batch through PyTorch and onnxruntime and compare."""
    session = onnx_session(path)
    net = net.eval()
    samples = torch_correct = onnx_correct = same = 0
    max_diff = 0.0
    with torch.no_grad():
        for x, y in batches:
            expected = net(x)
            got = torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
            max_diff = max(max_diff, float((expected - got).abs().max()))
            a, b = expected.argmax(dim=1), got.argmax(dim=1)
            torch_correct += int((a == y).sum())
            onnx_correct += int((b == y).sum())
            same += int((a == b).sum())
            samples += len(y)
    if samples == 0:
        raise UserError("no batches to check the ONNX model on")
    return OnnxCheck(samples, max_diff, 100 * torch_correct / samples, 100 * onnx_correct / samples, same)
