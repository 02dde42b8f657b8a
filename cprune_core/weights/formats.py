"""Which format a weights file is: told by its first bytes, checked against its extension, opened once.

``open_file`` gives a file's tensor source (``SafetensorsFile``, ``TorchFile`` or ``OnnxFile``): its
tensors described from metadata (``stored``), what their use says of their layout (``roles``; ONNX only,
a state dict's come from names), tensors listed but never read (``unread``), text ``metadata``, and
``read(name, rows)`` / ``tensors()`` for values.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WeightsFileError
from .budget import WeightsBudget
from .safetensors_format import SafetensorsFile, looks_like_safetensors
from .torch_format import ZIP_MAGIC, TorchFile, is_legacy_torch

if TYPE_CHECKING:
    from .onnx_format import OnnxFile

__all__ = ["FORMATS", "EXTENSIONS", "detect_format", "open_file"]

FORMATS = {"safetensors": "a safetensors file", "torch": "a PyTorch state dict (torch.save)",
           "onnx": "an ONNX model", "shards": "a sharded checkpoint: an index and its shards",
           "folder": "a folder of safetensors files"}
EXTENSIONS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch", ".jit": "torch",
              ".onnx": "onnx"}
ONNX_FIRST_BYTE = b"\x08"  # field 1 (ir_version, a varint) opens every ModelProto that ONNX writes


def detect_format(head: bytes, size: int) -> str | None:
    """The format ``head`` (a file's first 32 bytes) starts, judged by content alone; None when none."""
    if looks_like_safetensors(head, size):  # first: its length's low byte may be anything
        return "safetensors"
    if head.startswith(ZIP_MAGIC) or is_legacy_torch(head):
        return "torch"
    return "onnx" if head.startswith(ONNX_FIRST_BYTE) else None


def _check_file(path: Path, budget: WeightsBudget) -> tuple[str, int]:
    """(the format, the size) of ``path``: WeightsFileError when it is missing, too large, or not the
    format its extension claims."""
    if not path.is_file():
        raise WeightsFileError(f"Weights file {path} does not exist or is not a file.")
    size = path.stat().st_size
    if budget.max_file_bytes is not None and size > budget.max_file_bytes:
        raise WeightsFileError(f"{path.name} is {size / 2**20:,.0f} MiB; the limit is "
                               f"{budget.max_file_bytes / 2**20:,.0f} MiB.")
    try:
        with path.open("rb") as file:
            head = file.read(32)
    except OSError as error:  # no permission; a special file of /proc that refuses to be read
        raise WeightsFileError(f"Weights file {path} cannot be read ({error.strerror or error}).") from error
    found = detect_format(head, size)
    claimed = EXTENSIONS.get(path.suffix.lower())
    if claimed is not None and found is not None and found != claimed:
        suffix = next(ext for ext, kind in EXTENSIONS.items() if kind == found)
        raise WeightsFileError(f"{path.name} is not {FORMATS[claimed]}: its content looks like {FORMATS[found]}. "
                               f"Rename it with the extension {suffix}.")
    file_format = found or claimed
    if file_format is None:
        raise WeightsFileError(f"Could not read {path.name}: it is not a safetensors file, a PyTorch state dict "
                               "or an ONNX model. Save a state dict with torch.save(model.state_dict(), path).")
    return file_format, size


def open_file(path: Path, budget: WeightsBudget) -> tuple[str, SafetensorsFile | TorchFile | OnnxFile]:
    """(the format, the tensor source) of one weights file, its metadata read and checked once."""
    file_format, size = _check_file(path, budget)
    if file_format == "onnx":
        # Only for an ONNX model: the onnx package takes about a second to import (ml_dtypes' extension), which
        # the app's start and every command would otherwise pay.
        from .onnx_format import OnnxFile
        return file_format, OnnxFile(path, size, budget)
    kind = {"safetensors": SafetensorsFile, "torch": TorchFile}[file_format]
    return file_format, kind(path, size, budget)
