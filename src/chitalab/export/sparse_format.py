"""A compressed checkpoint for pruned weights: per tensor the smallest of dense bytes, a
bitmask plus the nonzero values, or CSR (row pointers, column indices, values).

Why a format of our own: `pruned.pt` stores every zero; `torch.save` of sparse tensors
would store int64 indices (larger than the dense tensor below ~67% sparsity for float32)
and pickles. This file is a short JSON header and one byte blob, so it loads without
unpickling anything, and `load_sparse(save_sparse(sd))` gives back `sd` bit for bit: NaN
counts as nonzero, and a tensor holding -0.0 gets one more bitmask, over its zeros, of
their signs (the pruners write +0.0 with masked_fill, so it is normally absent; a pruner
that multiplies by a mask writes -0.0 for every pruned negative weight).

Layout: MAGIC, the header length (8 bytes, little endian), the UTF-8 JSON header, then the
blob; every part starts at a multiple of 8 bytes of the blob.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..outputs import atomic_write

MAGIC = b"CHITALAB-SPARSE\x00"
FORMAT_VERSION = 1
SPARSE_FILE = "pruned.sparse"
ALIGN = 8
Encoding = Literal["dense", "bitmask", "csr"]
ENCODINGS: tuple[Encoding, ...] = ("dense", "bitmask", "csr")

# dtype <-> name, for the header (every dtype a state dict is likely to hold)
_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    )
}
_INDEX_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)


class SparseFormatError(ValueError):
    """A file that is not a sparse checkpoint of this version, or a damaged one."""


def _dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise SparseFormatError(f"tensors of dtype {dtype} are not supported; supported: {', '.join(_DTYPES)}")
    return name


def index_dtype(max_value: int) -> torch.dtype:
    """The narrowest integer dtype that holds 0..max_value."""
    for dtype in _INDEX_DTYPES:
        limit = 255 if dtype == torch.uint8 else torch.iinfo(dtype).max
        if max_value <= limit:
            return dtype
    raise SparseFormatError(f"index {max_value} does not fit in int64")


def nonzero_mask(t: Tensor) -> Tensor:
    """Flat bool mask of the entries that are not zero (NaN counts as nonzero, -0.0 as zero)."""
    return t.detach().reshape(-1) != 0


def negative_zeros(t: Tensor, mask: Tensor) -> Tensor | None:
    """Among the zeros of `t` (where `mask` is False), which are -0.0; None when there are none."""
    if not t.is_floating_point():
        return None
    signs = torch.signbit(t.detach().reshape(-1)[~mask])
    return signs if bool(signs.any()) else None


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """CSR view of a tensor: first dimension as rows, the rest flattened into columns."""
    if len(shape) == 0:
        return 1, 1
    rows = shape[0]
    return rows, math.prod(shape[1:]) if len(shape) > 1 else 1


def encoded_sizes(t: Tensor, mask: Tensor | None = None) -> dict[Encoding, int]:
    """Bytes each encoding would take for `t` (parts only; the header is shared)."""
    mask = nonzero_mask(t) if mask is None else mask
    n, nnz, item = t.numel(), int(mask.sum()), t.element_size()
    signs = negative_zeros(t, mask)
    sign_bytes = 0 if signs is None else math.ceil(signs.numel() / 8)
    rows, cols = _rows_cols(tuple(t.shape))
    if len(t.shape) == 1:
        rows, cols = 1, n
    col_item = index_dtype(max(cols - 1, 0)).itemsize
    row_item = index_dtype(nnz).itemsize
    return {
        "dense": n * item,
        "bitmask": math.ceil(n / 8) + nnz * item + sign_bytes,
        "csr": (rows + 1) * row_item + nnz * col_item + nnz * item + sign_bytes,
    }


def choose_encoding(t: Tensor, mask: Tensor | None = None) -> Encoding:
    """The smallest encoding for `t` (dense on ties: it is the cheapest to load)."""
    sizes = encoded_sizes(t, mask)
    return min(ENCODINGS, key=lambda e: (sizes[e], ENCODINGS.index(e)))


def pack_bits(mask: Tensor) -> Tensor:
    """Flat bool tensor -> uint8 tensor, 8 entries a byte, least significant bit first."""
    pad = (-mask.numel()) % 8
    bits = torch.cat([mask.to(torch.uint8), torch.zeros(pad, dtype=torch.uint8)]).view(-1, 8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
    return (bits * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, count: int) -> Tensor:
    """Inverse of `pack_bits`: the first `count` entries as a bool tensor."""
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((packed.view(-1, 1) >> shifts) & 1).view(-1)[:count].bool()


def _raw(t: Tensor) -> bytes:
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def encode_tensor(t: Tensor, encoding: Encoding | None = None) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The header entry and the parts (flat tensors) of one tensor in `encoding` (default: the smallest)."""
    t = t.detach().cpu()
    mask = nonzero_mask(t)
    encoding = encoding or choose_encoding(t, mask)
    if encoding not in ENCODINGS:
        raise SparseFormatError(f"encoding={encoding!r} is not allowed; choose one of: {', '.join(ENCODINGS)}")
    flat = t.contiguous().reshape(-1)
    entry: dict[str, Any] = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape), "encoding": encoding}
    if encoding == "dense":
        return entry, {"values": flat}
    values = flat[mask]
    signs = negative_zeros(t, mask)
    extra = {} if signs is None else {"negative_zeros": pack_bits(signs)}
    if encoding == "bitmask":
        return entry, {"mask": pack_bits(mask), "values": values, **extra}
    rows, cols = (1, flat.numel()) if t.dim() <= 1 else _rows_cols(tuple(t.shape))
    grid = mask.view(rows, cols)
    counts = grid.sum(dim=1)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    col = grid.nonzero()[:, 1]  # row-major order, as the values
    return entry, {
        "crow": crow.to(index_dtype(int(crow[-1]))),
        "col": col.to(index_dtype(max(cols - 1, 0))),
        "values": values,
        **extra,
    }


def decode_tensor(entry: Mapping[str, Any], parts: Mapping[str, Tensor]) -> Tensor:
    """Inverse of `encode_tensor`."""
    dtype = _DTYPES[entry["dtype"]]
    shape = tuple(entry["shape"])
    n = math.prod(shape)
    encoding = entry["encoding"]
    if encoding == "dense":
        return parts["values"].clone().view(shape)
    out = torch.zeros(n, dtype=dtype)
    if encoding == "bitmask":
        mask = unpack_bits(parts["mask"], n)
    elif encoding == "csr":
        rows, cols = (1, n) if len(shape) <= 1 else _rows_cols(shape)
        crow = parts["crow"].to(torch.int64)
        row = torch.repeat_interleave(torch.arange(rows), crow.diff())
        mask = torch.zeros(n, dtype=torch.bool)
        mask[row * cols + parts["col"].to(torch.int64)] = True
    else:
        raise SparseFormatError(f"unknown encoding {encoding!r} in the header")
    out[mask] = parts["values"]
    if "negative_zeros" in parts:
        zeros = (~mask).nonzero().flatten()
        signs = unpack_bits(parts["negative_zeros"], zeros.numel())
        out[zeros[signs]] = -0.0
    return out.view(shape)


def to_bytes(state: Mapping[str, Tensor]) -> bytes:
    """A state dict as the bytes of a sparse checkpoint."""
    header: dict[str, Any] = {"format_version": FORMAT_VERSION, "tensors": {}}
    blob = io.BytesIO()
    for name, tensor in state.items():
        entry, parts = encode_tensor(tensor)
        entry["parts"] = {}
        for part_name, part in parts.items():
            blob.write(b"\x00" * ((-blob.tell()) % ALIGN))
            data = _raw(part)
            entry["parts"][part_name] = {"dtype": _dtype_name(part.dtype), "offset": blob.tell(), "count": part.numel()}
            blob.write(data)
        header["tensors"][name] = entry
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + blob.getvalue()


def from_bytes(data: bytes) -> dict[str, Tensor]:
    """The state dict held by the bytes of a sparse checkpoint."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise SparseFormatError("not a chitalab sparse checkpoint (wrong magic bytes)")
    (head_len,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    try:
        header = json.loads(data[start : start + head_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SparseFormatError(f"damaged header: {err}") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise SparseFormatError(f"format version {header.get('format_version')!r}; this code reads {FORMAT_VERSION}")
    blob = bytearray(data[start + head_len :])
    whole = torch.frombuffer(blob, dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8)
    state: dict[str, Tensor] = {}
    for name, entry in header["tensors"].items():
        parts = {}
        for part_name, spec in entry["parts"].items():
            dtype = _DTYPES[spec["dtype"]]
            size = spec["count"] * torch.empty(0, dtype=dtype).element_size()
            if spec["offset"] + size > whole.numel():
                raise SparseFormatError(f"tensor {name}: part {part_name} runs past the end of the file")
            parts[part_name] = whole[spec["offset"] : spec["offset"] + size].view(dtype)
        state[name] = decode_tensor(entry, parts)
    return state


@dataclass(frozen=True)
class SparseFileInfo:
    """What `save_sparse` wrote: the file's size and how many tensors took each encoding."""

    path: Path
    bytes: int
    encodings: dict[str, int]


def encodings_of(state: Mapping[str, Tensor]) -> dict[str, int]:
    """How many tensors of `state` each encoding would be chosen for."""
    counts: dict[str, int] = dict.fromkeys(ENCODINGS, 0)
    for tensor in state.values():
        counts[choose_encoding(tensor.detach().cpu())] += 1
    return counts


def save_sparse(state: Mapping[str, Tensor], path: str | Path) -> SparseFileInfo:
    """Write `state` as a sparse checkpoint, atomically (`PATH.part`, then renamed)."""
    path = Path(path)
    data = to_bytes(state)
    atomic_write(path, lambda partial: partial.write_bytes(data))
    return SparseFileInfo(path, len(data), encodings_of(state))


def load_sparse(path: str | Path) -> dict[str, Tensor]:
    """The dense state dict stored in a sparse checkpoint."""
    return from_bytes(Path(path).read_bytes())


def dense_checkpoint_bytes(state: Mapping[str, Tensor]) -> int:
    """Size of `torch.save(state)`: what `pruned.pt` takes."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.tell()
