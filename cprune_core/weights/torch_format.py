"""PyTorch state dicts (``torch.save``): a zip archive of a pickle and one record per storage.

Read with ``weights_only=True`` (no code runs) and ``mmap=True``: storages stay in the file until
a value is read, so listing the tensors of a large file costs the pickle only. torch.save never
compresses a record; a compressed one could expand to any size, so it is refused. The legacy
(pre-zip) format declares storage sizes that torch allocates before reading them, so it is refused
too, with how to save the file again.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import WeightsFileError
from .budget import StoredTensor, WeightsBudget, check_stored_tensors, describe_tensor

__all__ = ["ZIP_MAGIC", "is_legacy_torch", "read_torch_archive"]

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # the number the legacy format pickles first
SAVE_HINT = "Save it with torch.save(model.state_dict(), path)."


def is_legacy_torch(head: bytes) -> bool:
    """Whether ``head`` (a file's first 32 bytes) starts PyTorch's legacy format: a pickle of its magic number."""
    return head.startswith(b"\x80") and LEGACY_MAGIC in head


def _check_archive(path: Path, size: int) -> None:
    """WeightsFileError unless ``path`` is a zip whose records are stored uncompressed inside the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise WeightsFileError(f"Could not read {path.name} as a PyTorch state dict (a damaged or truncated zip "
                               f"archive: {error}). {SAVE_HINT}") from error
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise WeightsFileError(f"{path.name}: record {record.filename[:80]!r} is compressed; torch.save never "
                                   f"compresses, and a compressed record can expand to any size. {SAVE_HINT}")
        if record.header_offset + record.compress_size > size:
            raise WeightsFileError(f"{path.name}: record {record.filename[:80]!r} extends past the end of the "
                                   "file: it is truncated or damaged.")


def read_torch_archive(path: Path, size: int,
                       budget: WeightsBudget) -> tuple[dict[str, torch.Tensor], list[StoredTensor], dict[str, str]]:
    """The tensors of a state dict saved by ``torch.save``, memory-mapped, their descriptions, every one
    checked by ``check_stored_tensors`` (no value read), and the file's text metadata. A ``{"state_dict":
    {...}}`` wrapper is unwrapped; its other entries whose names and values are strings are the metadata
    (a saved model's copy of its model.json, for one).

    Raises WeightsFileError for the legacy format, a damaged or compressed archive, anything but a
    mapping of names to tensors, and tensors that fail the budget.
    """
    with path.open("rb") as file:
        head = file.read(32)
    if is_legacy_torch(head):
        raise WeightsFileError(f"{path.name} was saved in PyTorch's legacy format (before torch 1.6), which cannot "
                               "be read safely: load it once with your own torch and save it again with "
                               "torch.save(model.state_dict(), path).")
    _check_archive(path, size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sparse-invariant and TypedStorage notes
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # UnpicklingError, RuntimeError from a damaged record: the file, not CPrune
        raise WeightsFileError(f"Could not read {path.name} as a PyTorch state dict ({type(error).__name__}: "
                               f"{' '.join(str(error).split())[:200]}). {SAVE_HINT}") from error
    metadata: dict[str, str] = {}
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        metadata = {key: value for key, value in state.items() if isinstance(key, str) and isinstance(value, str)}
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsFileError(f"{path.name} is not a state dict (a mapping of parameter names to tensors). "
                               f"{SAVE_HINT}")
    stored = [describe_tensor(name, tensor) for name, tensor in state.items()]
    check_stored_tensors(stored, path.name, budget)
    return state, stored, metadata
