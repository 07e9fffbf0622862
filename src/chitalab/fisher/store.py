"""The Fisher store: G written once to disk and read back by every job that needs the same G.

A sweep over sparsities, λ or solvers prunes the same weights with the same samples, so its
jobs share one G. An entry is named by a SHA-256 key over everything G depends on
(`gradient_key`: every tensor of the model's state, the pruned tensors, the sample draw itself,
the loss, the gradient settings and the version of the gradient code).

File layout: a 4096-byte header (magic line, JSON with the key, shape, dtype, block size and
the CRC-32 of the data), then G in blocks of consecutive rows, each block stored column-major
(Gᵀ of the block). Blocks are appended as they are computed, so writing holds one block in
memory; a column group is read back with one contiguous read per block.

Integrity: an entry is written under a temporary name and renamed when complete, so a killed
job leaves no half entry (its temporary file is removed by the next writer); a truncated,
corrupt (checksum) or mismatched (header) entry is removed with a warning and recomputed.
Concurrent jobs computing the same key each write their own temporary file; the last rename
wins and both are valid. The store keeps at most `max_gb`, evicting least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..params import PrunedParams

log = logging.getLogger(__name__)

GRADIENT_CODE_VERSION = "1"  # bump when a change to the gradient path changes what G holds
MAGIC = b"chitalab-fisher-store 1\n"
HEADER_BYTES = 4096
SUFFIX = ".fisher"
READ_BYTES = 64 << 20  # checksum pass: bytes per read
STALE_SECONDS = 24 * 3600  # a temporary file this old is removed even if its writer's pid is alive


def tensor_bytes(t: Tensor) -> memoryview:
    """The raw bytes of `t` (on the CPU, contiguous), without a copy when it already is."""
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def gradient_key(
    model: nn.Module,
    pruned: PrunedParams,
    loss_fn: Callable,
    x: Tensor,
    y: Tensor,
    settings: dict,
) -> str:
    """SHA-256 over what G is a function of: the gradient code's version, the loss, `settings`
    (mini-batch, dtype, method), the pruned tensors' names and shapes, every parameter and
    buffer of the model (so later CHITA++ stages and gradual steps get their own entries) and
    the samples (x, y) themselves (data source, normalisation and the draw)."""
    h = hashlib.sha256()
    loss_name = f"{getattr(loss_fn, '__module__', '')}.{getattr(loss_fn, '__qualname__', repr(loss_fn))}"
    h.update(json.dumps([GRADIENT_CODE_VERSION, loss_name, settings, pruned.names, pruned.shapes]).encode())
    add_tensors(h, [*model.state_dict().items(), ("x", x), ("y", y)])
    return h.hexdigest()


def add_tensors(h: hashlib._Hash, named: Iterable[tuple[str, Tensor]]) -> None:
    """Feed each tensor's name, dtype, shape and bytes to the hash `h`."""
    for name, t in named:
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(tensor_bytes(t))


class StoreError(Exception):
    """An entry that cannot be used (truncated, corrupt or not the one asked for)."""


class StoredGradients:
    """A verified entry: G (n x p) readable one column group at a time."""

    def __init__(self, path: Path, header: dict, dtype: torch.dtype):
        self.path, self.dtype = path, dtype
        self.n, self.p, self.block_rows = header["n"], header["p"], header["block_rows"]

    def read(self, start: int, stop: int, crc32: int | None = None) -> Tensor:
        """Columns [start, stop) of G, n x (stop − start), column-major. With `crc32` (a read
        of every column), the bytes read are checked against it on the way (StoreError)."""
        width = stop - start
        out = torch.empty(width, self.n, dtype=self.dtype).T
        itemsize = out.element_size()
        crc = 0
        with open(self.path, "rb", buffering=0) as f:
            block_offset = HEADER_BYTES
            for row in range(0, self.n, self.block_rows):
                rows = min(self.block_rows, self.n - row)
                whole = width == self.p and rows == self.n  # one block of everything: read in place
                block = out.T if whole else torch.empty(width, rows, dtype=self.dtype)
                f.seek(block_offset + start * rows * itemsize)
                data = memoryview(block.view(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
                if f.readinto(data) != data.nbytes:
                    raise StoreError("truncated")
                if crc32 is not None:
                    crc = zlib.crc32(data, crc)
                if not whole:
                    out[row : row + rows] = block.T
                block_offset += self.p * rows * itemsize
        if crc32 is not None and crc != crc32:
            raise StoreError("checksum mismatch (corrupt)")
        return out


class FisherStore:
    """Entries of G under `root`, at most `max_gb` in all."""

    def __init__(self, root: str | Path, max_gb: float = 20.0):
        self.root, self.max_bytes = Path(root), int(max_gb * 2**30)

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def open(self, key: str, n: int, p: int, dtype: torch.dtype) -> StoredGradients | None:
        """The entry for `key` if it exists and is sound (header, size and checksum, checked by
        one streaming pass); a bad one is removed (with a warning)."""
        try:
            header = self._header(key, n, p, dtype)
            if header is not None:
                self._check_crc(self.path(key), header["crc32"])
        except (StoreError, OSError, ValueError) as err:
            self._discard(key, err)
            return None
        return None if header is None else StoredGradients(self.path(key), header, dtype)

    def load(self, key: str, n: int, p: int, dtype: torch.dtype) -> Tensor | None:
        """All of G for `key` (n x p, column-major), checked against its checksum in the same
        pass that reads it; None when absent; a bad entry is removed (with a warning)."""
        try:
            header = self._header(key, n, p, dtype)
            return (
                None if header is None else StoredGradients(self.path(key), header, dtype).read(0, p, header["crc32"])
            )
        except (StoreError, OSError, ValueError) as err:
            self._discard(key, err)
            return None

    def _discard(self, key: str, err: Exception) -> None:
        log.warning("Fisher store: entry %s is unusable (%s); removed, recomputing", self.path(key).name, err)
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError:  # a read-only folder: the entry stays, and is recomputed by every job
            pass

    def _header(self, key: str, n: int, p: int, dtype: torch.dtype) -> dict | None:
        """The entry's header, checked against what is asked for and the file's size (None: no
        entry). Touches the file: least recently used eviction goes by modification time."""
        path = self.path(key)
        if not path.exists():
            return None
        itemsize = torch.empty((), dtype=dtype).element_size()
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
        if not raw.startswith(MAGIC):
            raise StoreError("not a Fisher store file")
        header = json.loads(raw[len(MAGIC) :].rstrip(b"\0 "))
        expected = {"key": key, "n": n, "p": p, "dtype": str(dtype)}
        found = {name: header.get(name) for name in expected}
        if found != expected:
            raise StoreError(f"header {found} does not match {expected}")
        size = path.stat().st_size
        if size != HEADER_BYTES + n * p * itemsize:
            raise StoreError(f"{size} bytes, expected {HEADER_BYTES + n * p * itemsize} (truncated)")
        try:
            os.utime(path)
        except OSError:  # a read-only store is read as it is (its eviction order is not ours to keep)
            pass
        return header

    @staticmethod
    def _check_crc(path: Path, expected: int) -> None:
        crc = 0
        with open(path, "rb") as f:
            f.seek(HEADER_BYTES)
            while chunk := f.read(READ_BYTES):
                crc = zlib.crc32(chunk, crc)
        if crc != expected:
            raise StoreError("checksum mismatch (corrupt)")

    def write(self, key: str, n: int, p: int, dtype: torch.dtype, blocks: Iterable[Tensor]) -> StoredGradients:
        """Write the entry for `key` from `blocks`, consecutive row blocks of G (each rows x p,
        all but the last equally tall), and return it (not read back: its writer trusts it).
        Nothing is left behind if the blocks raise."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        path = self.path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        crc, rows_written, block_rows = 0, 0, 0
        try:
            with open(tmp, "wb") as f:
                f.write(b"\0" * HEADER_BYTES)
                for block in blocks:
                    if block.shape[1] != p or block.dtype != dtype:
                        raise ValueError(f"a block of shape {tuple(block.shape)} and {block.dtype} for G of {n} x {p}")
                    data = tensor_bytes(block.T)
                    crc = zlib.crc32(data, crc)
                    f.write(data)
                    block_rows = block_rows or block.shape[0]
                    rows_written += block.shape[0]
                if rows_written != n:
                    raise ValueError(f"{rows_written} rows written, expected {n}")
                header = {"key": key, "n": n, "p": p, "dtype": str(dtype), "block_rows": block_rows, "crc32": crc}
                encoded = MAGIC + json.dumps(header).encode()
                f.seek(0)
                f.write(encoded.ljust(HEADER_BYTES, b"\0"))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._evict(keep=path)
        return StoredGradients(path, header, dtype)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writers that died (killed while writing)."""
        for tmp in self.root.glob(f"*{SUFFIX}.*.tmp"):
            pid_text = tmp.name.split(".")[-2]
            pid = int(pid_text) if pid_text.isdigit() else -1
            try:
                old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
            except FileNotFoundError:
                continue
            if old or not pid_alive(pid):
                tmp.unlink(missing_ok=True)

    def _evict(self, keep: Path) -> None:
        """Remove least recently used entries until the store fits `max_gb` (`keep` stays)."""
        entries = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
                log.info("Fisher store: evicted %s (least recently used)", path.name)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
