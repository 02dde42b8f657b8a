"""``.safetensors``: an 8-byte little-endian header length, a JSON header, then the raw values.

The header names every tensor with its dtype, shape and byte range, so the tensors of a file of any
size are listed from its first kilobytes. It is read once per file: its size capped (MAX_HEADER_BYTES), its
JSON counted before it is expanded (``bounded_json``), every entry checked. A tensor's values are read from
its byte range alone (``raw.read_rows``), only when it is chosen; two names with the very same bytes, dtype
and shape are one tensor under two names (tied weights), any other overlap a damaged file.
"""
from __future__ import annotations

import struct
from pathlib import Path

import torch

from ..errors import WeightsFileError
from .budget import StoredTensor, WeightsBudget
from .bounded_json import load_bounded_json
from .raw import read_rows

__all__ = ["looks_like_safetensors", "SafetensorsFile", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 32 * 2**20  # 100,000 tensors with 300-character names; the safetensors package allows 100 MB
# safetensors dtype -> (torch dtype name, bytes per element)
DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "I16": ("int16", 2), "U16": ("uint16", 2), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4),
    "F64": ("float64", 8), "I64": ("int64", 8), "U64": ("uint64", 8), "C64": ("complex64", 8),
}


def _header_length(head: bytes, size: int) -> int | None:
    """The JSON header's length when ``head`` (the first 9 bytes) starts a safetensors file of ``size`` bytes."""
    if len(head) < 9:
        return None
    length = struct.unpack("<Q", head[:8])[0]
    return length if 2 <= length <= size - 8 and head[8:9] == b"{" else None


def looks_like_safetensors(head: bytes, size: int) -> bool:
    return _header_length(head, size) is not None


def _entry(name: str, entry: object, data_bytes: int, file_name: str) -> tuple[StoredTensor, tuple[int, int]]:
    """One header entry as a StoredTensor and its byte range; WeightsFileError when it is malformed."""
    def bad(why: str) -> WeightsFileError:
        return WeightsFileError(f"{file_name}: the safetensors header entry {name[:80]!r} {why}; the file is "
                                "damaged or was not written by safetensors.")

    if not isinstance(entry, dict):
        raise bad("is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        raise bad(f"has an unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        raise bad("has no valid shape (a list of sizes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise bad("points outside the file")
    torch_name, itemsize = DTYPES[dtype]
    return StoredTensor(name, tuple(shape), torch_name, itemsize, offsets[1] - offsets[0]), (offsets[0], offsets[1])


def _read_header(path: Path, size: int, budget: WeightsBudget) -> tuple[dict, int]:
    """The parsed JSON header and where the values start."""
    with path.open("rb") as file:
        length = _header_length(file.read(9), size)
        if length is None:
            raise WeightsFileError(f"{path.name} is not a safetensors file (no valid header length at its start), "
                                   "or it is truncated.")
        if length > MAX_HEADER_BYTES:
            raise WeightsFileError(f"{path.name}: its safetensors header is {length:,} bytes; the limit is "
                                   f"{MAX_HEADER_BYTES:,} (100,000 tensors need far less).")
        file.seek(8)
        text = file.read(length)
    tensors = budget.max_tensors
    header = load_bounded_json(text, f"The safetensors header of {path.name}", max_objects=tensors + 2,
                               max_arrays=2 * tensors + 2, max_values=16 * tensors + 1024)
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path.name}: the safetensors header is not a JSON object.")
    return header, 8 + length


class SafetensorsFile:
    """A safetensors file's tensors from its header (read once), their values read on demand.

    Raises WeightsFileError when the file is truncated, its header too large, not valid JSON or holding more
    than a model's share of objects, an entry is malformed or points outside the file, or two tensors' bytes
    overlap without being the same tensor.
    """

    roles: dict = {}  # every tensor's role is read from its name (roles.name_role)
    unread: tuple = ()
    name_hints = True

    def __init__(self, path: Path, size: int, budget: WeightsBudget):
        self.path, self.size = path, size
        header, self._data_start = _read_header(path, size, budget)
        entries = sorted((_entry(name, entry, size - self._data_start, path.name) for name, entry in header.items()
                          if name != "__metadata__"), key=lambda pair: pair[1])
        for (before, span), (after, next_span) in zip(entries, entries[1:]):
            same = span == next_span and (before.dtype, before.shape) == (after.dtype, after.shape)
            if next_span[0] < span[1] and not same:
                raise WeightsFileError(f"{path.name}: tensors {before.name!r} and {after.name!r} share bytes; the "
                                       "file is damaged or was not written by safetensors.")
        self.stored = [tensor for tensor, _ in entries]
        self._spans = {tensor.name: span for tensor, span in entries}
        self._by_name = {tensor.name: tensor for tensor in self.stored}
        metadata = header.get("__metadata__")
        self.metadata = ({key: value for key, value in metadata.items()
                          if isinstance(key, str) and isinstance(value, str)} if isinstance(metadata, dict) else {})

    def identity(self, name: str) -> tuple | None:
        start, end = self._spans[name]
        tensor = self._by_name[name]
        return (str(self.path), start, end, tensor.dtype, tensor.shape) if end > start else None

    def read(self, name: str, rows: tuple[int, int] | None = None, float32: bool = True) -> torch.Tensor:
        """The tensor's values (or its rows ``start:stop``) from its own bytes: floats as float32 (or as stored)."""
        tensor = self._by_name[name]
        return read_rows(self.path, self._data_start + self._spans[name][0], getattr(torch, tensor.dtype),
                         tensor.shape, rows, float32)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor as stored: a state dict."""
        return {tensor.name: self.read(tensor.name, float32=False) for tensor in self.stored}
