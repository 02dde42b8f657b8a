"""``.safetensors``: an 8-byte little-endian header length, a JSON header, then the raw values.

The header names every tensor with its dtype, shape and byte range, so the layers of a file of
any size are listed from its first kilobytes. Values are read with the ``safetensors`` package
(memory-mapped), one tensor at a time, only once the header has passed the budget.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import WeightsFileError
from .budget import StoredTensor

__all__ = ["looks_like_safetensors", "read_safetensors_header", "read_safetensors_tensors", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors package's own limit
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
    return length if 2 <= length <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{" else None


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
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise bad("has no valid shape (a list of sizes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise bad("points outside the file")
    torch_name, itemsize = DTYPES[dtype]
    return StoredTensor(name, tuple(shape), torch_name, itemsize, offsets[1] - offsets[0]), (offsets[0], offsets[1])


def read_safetensors_header(path: Path, size: int) -> tuple[list[StoredTensor], dict[str, str]]:
    """Every tensor of a safetensors file, in natural order of their names, from the header alone, and the
    header's text metadata (its ``__metadata__`` entries whose names and values are strings).

    Raises WeightsFileError when the file is truncated, its header is not valid JSON, an entry is
    malformed or points outside the file, or two tensors' bytes overlap.
    """
    with path.open("rb") as file:
        head = file.read(9)
        length = _header_length(head, size)
        if length is None:
            raise WeightsFileError(f"{path.name} is not a safetensors file (no valid header length at its start), "
                                   "or it is truncated.")
        file.seek(8)
        text = file.read(length)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WeightsFileError(f"{path.name}: the safetensors header is not valid JSON ({str(error)[:100]}); the "
                               "file is damaged or truncated.") from error
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path.name}: the safetensors header is not a JSON object.")
    data_bytes = size - 8 - length
    entries = sorted((_entry(name, entry, data_bytes, path.name) for name, entry in header.items()
                      if name != "__metadata__"), key=lambda pair: pair[1])
    for (before, (_, end)), (after, (start, _)) in zip(entries, entries[1:]):
        if start < end:
            raise WeightsFileError(f"{path.name}: tensors {before.name!r} and {after.name!r} share bytes; the file "
                                   "is damaged or was not written by safetensors.")
    metadata = header.get("__metadata__")
    metadata = ({key: value for key, value in metadata.items() if isinstance(key, str) and isinstance(value, str)}
                if isinstance(metadata, dict) else {})
    # Bytes are ordered by dtype, not by model: "layer2" before "layer10", as a model defines them.
    return sorted((tensor for tensor, _ in entries), key=lambda tensor: _natural_key(tensor.name)), metadata


def _natural_key(name: str) -> list:
    """"layer10.0" after "layer2.0": digits compared as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def read_safetensors_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The values of ``names`` (already checked by ``read_safetensors_header``), as stored."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            return {name: file.get_tensor(name) for name in names}
    except (SafetensorError, OSError) as error:
        raise WeightsFileError(f"Could not read {path.name} as safetensors ({str(error)[:200]}).") from error
