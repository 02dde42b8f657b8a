"""PyTorch files (``torch.save``): a zip archive of a pickle and one record per storage, or the legacy format.

Every pickle is scanned first (``pickle_scan``: its opcodes counted against the tensors it references,
before an object is built), then read with ``weights_only=True`` (no code runs). A zip archive is
memory-mapped (``mmap=True``): storages stay in the file until a value is read, so listing the tensors of a
large file costs the pickle only. torch.save never compresses a record; a compressed one could expand to any
size, so it is refused. The legacy format (before torch 1.6) is read whole, once the storage sizes its pickle
declares (which torch allocates before reading them) fit in the file. A TorchScript program
(``torch.jit.save``: a zip with ``code/`` and ``constants.pkl``) is refused with how to save its state dict:
its weights come with code, which is never run.
"""
from __future__ import annotations

import io
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import WeightsFileError
from .budget import MAX_IN_MEMORY_BYTES, StoredTensor, WeightsBudget, describe_tensor
from .pickle_scan import MAX_PICKLE_BYTES, declared_storage_bytes, scan_pickle

__all__ = ["ZIP_MAGIC", "is_legacy_torch", "TorchFile"]

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # the number the legacy format pickles first
SAVE_HINT = "Save it with torch.save(model.state_dict(), path)."
END_SEARCH_BYTES = 22 + 65535 + 20  # the end record, the longest comment, a zip64 locator before it
RECORDS_BESIDE_TENSORS = 64  # data.pkl, version, byteorder, serialization id...


def is_legacy_torch(head: bytes) -> bool:
    """Whether ``head`` (a file's first 32 bytes) starts PyTorch's legacy format: a pickle of its magic number."""
    return head.startswith(b"\x80") and LEGACY_MAGIC in head


def _zip_records(path: Path, size: int) -> int:
    """The number of records a zip archive's end-of-central-directory declares (its zip64 record's when there is
    one), read from its last bytes: what ``zipfile`` would build an object for."""
    with path.open("rb") as file:
        file.seek(max(0, size - END_SEARCH_BYTES))
        tail = file.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        return 0  # not found: zipfile refuses the archive itself
    records = struct.unpack("<H", tail[end + 10:end + 12])[0]
    locator = tail.rfind(b"PK\x06\x07", 0, end)
    if locator >= 0 and len(tail) >= locator + 20:
        zip64_end = struct.unpack("<Q", tail[locator + 8:locator + 16])[0]
        with path.open("rb") as file:
            file.seek(min(zip64_end, size))
            head = file.read(40)
        if head.startswith(b"PK\x06\x06") and len(head) == 40:
            records = max(records, struct.unpack("<Q", head[32:40])[0])
    return records


def _archive_pickle(path: Path, size: int, budget: WeightsBudget) -> bytes:
    """The state pickle (``data.pkl``) of a zip archive whose records are stored uncompressed inside the file;
    WeightsFileError for a damaged or compressed archive, one of more records than a model's tensors need (counted
    from its end record before ``zipfile`` builds an object per record), or a TorchScript program."""
    records = _zip_records(path, size)
    if records > budget.max_tensors + RECORDS_BESIDE_TENSORS:
        raise WeightsFileError(f"{path.name} is a zip archive of {records:,} records; a state dict of at most "
                               f"{budget.max_tensors:,} tensors needs far fewer. {SAVE_HINT}")
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if any(r.filename.endswith("/constants.pkl") or "/code/" in r.filename for r in records):
                raise WeightsFileError(
                    f"{path.name} is a TorchScript program (torch.jit.save): its weights come with code, which CPrune "
                    "never runs. Save its state dict with your own torch: torch.save(torch.jit.load(path)"
                    ".state_dict(), 'weights.pt'), and open that.")
            for record in records:
                if record.compress_type != zipfile.ZIP_STORED:
                    raise WeightsFileError(f"{path.name}: record {record.filename[:80]!r} is compressed; torch.save "
                                           f"never compresses, and a compressed record can expand to any size. {SAVE_HINT}")
                if record.header_offset + record.compress_size > size:
                    raise WeightsFileError(f"{path.name}: record {record.filename[:80]!r} extends past the end of the "
                                           "file: it is truncated or damaged.")
            state = [r for r in records if r.filename.count("/") == 1 and r.filename.endswith("/data.pkl")]
            if len(state) != 1 or state[0].file_size > MAX_PICKLE_BYTES:
                raise WeightsFileError(f"{path.name} is a zip archive but not one torch.save wrote (no data.pkl, or "
                                       f"one over {MAX_PICKLE_BYTES // 2**20} MiB). {SAVE_HINT}")
            return archive.read(state[0])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise WeightsFileError(f"Could not read {path.name} as a PyTorch state dict (a damaged or truncated zip "
                               f"archive: {error}). {SAVE_HINT}") from error


def _check_legacy(path: Path, size: int, budget: WeightsBudget) -> None:
    """WeightsFileError unless the legacy file's pickles are a state dict's and the storages they declare fit
    in the file (torch allocates them before reading)."""
    if size > MAX_IN_MEMORY_BYTES:
        raise WeightsFileError(f"{path.name} is in PyTorch's legacy format, which is read whole, and is "
                               f"{size / 2**30:,.1f} GiB (the limit is {MAX_IN_MEMORY_BYTES // 2**30} GiB). {SAVE_HINT}")
    stream = io.BytesIO(path.read_bytes())
    for _ in range(3):  # the magic number, the protocol version, the system's byte order and sizes
        scan_pickle(stream, path.name, 0)
    state_start = stream.tell()
    scan_pickle(stream, path.name, budget.max_tensors)
    scan_pickle(stream, path.name, 0)  # the storages' keys
    stream.seek(state_start)
    declared = declared_storage_bytes(stream, path.name)
    if declared > size:
        raise WeightsFileError(f"{path.name} declares {declared:,} bytes of storages but holds {size:,}: it is "
                               f"truncated or forged. {SAVE_HINT}")


def _load(path: Path, size: int, budget: WeightsBudget) -> object:
    with path.open("rb") as file:
        legacy = is_legacy_torch(file.read(32))
    if legacy:
        _check_legacy(path, size, budget)
    else:
        scan_pickle(io.BytesIO(_archive_pickle(path, size, budget)), path.name, budget.max_tensors)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sparse-invariant and TypedStorage notes
            return torch.load(path, map_location="cpu", weights_only=True, mmap=not legacy)
    except Exception as error:  # UnpicklingError, RuntimeError from a damaged record: the file, not CPrune
        raise WeightsFileError(f"Could not read {path.name} as a PyTorch state dict ({type(error).__name__}: "
                               f"{' '.join(str(error).split())[:200]}). {SAVE_HINT}") from error


class TorchFile:
    """A state dict saved by ``torch.save``: its tensors (memory-mapped for the zip format), described from
    their metadata (``stored``), and the file's text ``metadata``. A ``{"state_dict": {...}}`` wrapper is
    unwrapped; its other entries whose names and values are strings are the metadata (a saved model's copy of
    its model.json, for one).

    Raises WeightsFileError (see ``_load``) for a damaged, compressed, TorchScript or forged file, and for
    anything but a mapping of names to tensors.
    """

    roles: dict = {}  # every tensor's role is read from its name (roles.name_role)
    unread: tuple = ()
    name_hints = True

    def __init__(self, path: Path, size: int, budget: WeightsBudget):
        self.path, self.size = path, size
        state = _load(path, size, budget)
        self.metadata: dict[str, str] = {}
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            self.metadata = {key: value for key, value in state.items()
                             if isinstance(key, str) and isinstance(value, str)}
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise WeightsFileError(f"{path.name} is not a state dict (a mapping of parameter names to tensors). "
                                   f"{SAVE_HINT}")
        self.state: dict[str, torch.Tensor] = state
        self.stored: list[StoredTensor] = [describe_tensor(name, tensor) for name, tensor in state.items()]

    def identity(self, name: str) -> tuple | None:
        """What two names holding the very same values (tied weights, aliases) share; None for no values."""
        tensor = self.state[name]
        if tensor.layout != torch.strided or tensor.device.type == "meta" or tensor.numel() == 0:
            return None
        return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
                tensor.dtype)

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor's values (or rows ``start:stop``), copied out of the file: floats as float32."""
        tensor = self.state[name]
        tensor = tensor[rows[0]:rows[1]] if rows is not None else tensor
        return tensor.to(torch.float32, copy=True) if tensor.is_floating_point() else tensor.clone()

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.state
