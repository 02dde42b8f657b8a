"""Values read straight from a file at a known offset (a safetensors tensor, ONNX external data), and the files
a model may read beside its own.

A tensor's bytes are read with one positioned read into a buffer of exactly their size, never the whole
file: only the chosen layer (or its chosen rows) costs memory. Not ``mmap``: a mapped file that shrinks
while it is read (a shard being rewritten) ends the process with SIGBUS; a short read is an error here.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..errors import WeightsFileError

__all__ = ["read_rows", "model_file", "CONVERT_BLOCK_BYTES"]

CONVERT_BLOCK_BYTES = 8 * 2**20  # bf16/fp16/fp64 bytes read and turned to float32 at a time


def _read_into(file, target: torch.Tensor, what: Path) -> None:
    """Fill ``target`` (contiguous) with the next bytes of ``file``; WeightsFileError when the file ends first."""
    raw = target.view(-1).view(torch.uint8) if target.numel() else target
    if raw.numel() and file.readinto(raw.numpy()) != raw.numel():
        raise WeightsFileError(f"{what.name} ends before the tensor it holds: it is truncated or was changed while "
                               "it was read.")


def read_rows(path: Path, offset: int, dtype: torch.dtype, shape: tuple[int, ...],
              rows: tuple[int, int] | None = None, float32: bool = False) -> torch.Tensor:
    """The tensor of ``shape`` and ``dtype`` stored little-endian from byte ``offset`` of ``path``, or only its
    rows ``start:stop`` along the first dimension (their bytes alone are read). ``float32``: a floating-point
    tensor comes back as float32, converted a block of at most CONVERT_BLOCK_BYTES at a time (its float32 copy and
    one block in memory, never the whole stored tensor beside it). WeightsFileError when the file ends before
    the tensor does, or cannot be read."""
    start, stop = rows if rows is not None else (0, shape[0] if shape else 1)
    rest = tuple(shape[1:])
    convert = float32 and dtype.is_floating_point and dtype != torch.float32
    result = torch.empty((stop - start, *rest) if shape else (), dtype=torch.float32 if convert else dtype)
    row_elements = math.prod(rest)
    try:
        with path.open("rb") as file:
            file.seek(offset + start * row_elements * dtype.itemsize)
            if not convert:
                _read_into(file, result, path)
                return result
            step = max(1, CONVERT_BLOCK_BYTES // max(1, row_elements * dtype.itemsize))
            flat = result.view(-1, *rest) if shape else result.view(1)
            block = torch.empty(min(step, flat.shape[0]) * max(1, row_elements), dtype=dtype)
            for first in range(0, flat.shape[0], step):
                rows_here = min(step, flat.shape[0] - first)
                chunk = block[:rows_here * max(1, row_elements)]
                _read_into(file, chunk, path)
                flat[first:first + rows_here].copy_(chunk.view(flat[first:first + rows_here].shape))
    except OSError as error:
        raise WeightsFileError(f"Could not read {path.name} ({error.strerror or error}).") from error
    return result


def _hub_blobs(folder: Path) -> Path | None:
    """The ``blobs`` folder of a Hugging Face cache snapshot (``models--org--name/snapshots/<revision>``), whose
    files are links into it; None for any other folder."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent / "blobs"
    return None


def model_file(folder: Path, name: str, what: str) -> Path:
    """The file ``name`` (as a model's own file writes it: an index's shard, an ONNX tensor's external data
    location) inside ``folder``, links followed; WeightsFileError when the name is absolute, climbs out with
    ``..``, or resolves (through a link) outside the folder and, for a Hugging Face cache snapshot, its blobs.
    ``what`` names the file that wrote ``name``."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\0" in name:
        raise WeightsFileError(f"{what} names the file {name[:120]!r}, which is not a plain name inside its folder "
                               "(an absolute path, or one that climbs out with '..'); a model's files are read only "
                               "from its own folder.")
    real_folder = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(folder / name))
    allowed = [real_folder] + [Path(os.path.realpath(blobs)) for blobs in [_hub_blobs(real_folder)] if blobs]
    if not any(real == place or place in real.parents for place in allowed):
        raise WeightsFileError(f"{what} names the file {name[:120]!r}, a link that leads outside its folder; a "
                               "model's files are read only from its own folder.")
    if not real.is_file():
        raise WeightsFileError(f"{what} names the file {name[:120]!r}, which is missing from {folder.name}.")
    return real
