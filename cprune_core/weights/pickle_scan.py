"""A pickle's cost, counted from its opcodes before anything is unpickled.

``torch.load(weights_only=True)`` runs no code, but it builds every object the pickle describes: 16 MB of
nested empty lists cost over a gigabyte and tens of seconds before the result can be seen not to be a state
dict. A state dict's pickle is a few dozen opcodes per tensor (a name, a storage's persistent id, the offset,
shape and strides, a rebuild call). So the opcodes are read first (``pickletools.genops``: no object is built),
and a pickle that runs past a fixed allowance plus ``OPCODES_PER_TENSOR`` for each persistent id seen so far is
refused at that point, in a fraction of a second whatever its size.

PyTorch's legacy format (before 1.6) pickles each storage's size, which ``torch.load`` allocates before it
reads the storage: ``declared_storage_bytes`` reads those sizes with an unpickler whose every global is an
inert stand-in, so that they can be checked against the file's size first.
"""
from __future__ import annotations

import io
import pickle
import pickletools

from ..errors import WeightsFileError

__all__ = ["MAX_PICKLE_BYTES", "OPCODE_ALLOWANCE", "OPCODES_PER_TENSOR", "scan_pickle", "declared_storage_bytes"]

MAX_PICKLE_BYTES = 64 * 2**20  # a state dict of 100,000 tensors pickles to about 15 MB
OPCODE_ALLOWANCE = 100_000  # anything beside the tensors: a config, an epoch, an optimizer's hyperparameters
OPCODES_PER_TENSOR = 64  # torch.save writes about 35 per tensor
STORAGE_ITEMSIZE = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}


def scan_pickle(stream: io.BytesIO, what: str, max_tensors: int) -> int:
    """Read the opcodes of the pickle at ``stream``'s position up to its STOP (leaving the stream after it);
    return how many persistent ids (tensor storages) it references.

    Raises WeightsFileError naming ``what`` when the pickle is damaged, references more than ``max_tensors``
    storages, or holds more opcodes than OPCODE_ALLOWANCE + OPCODES_PER_TENSOR per storage seen so far
    (nested containers, a million aliases of one tensor): checked as it is read, so a hostile pickle is
    refused after at most that many opcodes.
    """
    opcodes = persistent = 0
    try:
        for opcode, _, _ in pickletools.genops(stream):
            opcodes += 1
            if opcode.name in ("BINPERSID", "PERSID"):
                persistent += 1
                if persistent > max_tensors:
                    raise WeightsFileError(f"{what} references more than {max_tensors:,} tensors, the limit per "
                                           "model.")
            elif opcodes > OPCODE_ALLOWANCE + OPCODES_PER_TENSOR * persistent:
                raise WeightsFileError(
                    f"{what} is not a plain state dict: its pickle holds more than {opcodes - 1:,} objects for "
                    f"{persistent:,} tensors (nested containers, aliases or other data). Save the state dict alone: "
                    "torch.save(model.state_dict(), path).")
    except (ValueError, pickle.UnpicklingError, UnicodeDecodeError) as error:  # an unknown opcode, a cut pickle
        raise WeightsFileError(f"{what} is not a pickle torch.save wrote ({str(error)[:100]}); the file is damaged "
                               "or truncated.") from error
    return persistent


class _Inert:
    """What every global of a scanned legacy pickle becomes: it takes any arguments and any state, and does
    nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _StorageType(_Inert):
    def __init__(self, itemsize: int):
        self.itemsize = itemsize


class _DeclaredStorages(pickle.Unpickler):
    """Unpickles a legacy torch pickle with inert globals, recording each storage's declared size."""

    def __init__(self, stream: io.BytesIO):
        super().__init__(stream)
        self.storages: dict[str, int] = {}  # key -> declared bytes

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_ITEMSIZE:
            return _StorageType(STORAGE_ITEMSIZE[name])
        return dict if (module, name) == ("collections", "OrderedDict") else _Inert

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and type(pid[4]) is int and pid[4] >= 0):
            raise pickle.UnpicklingError("a storage reference that torch.save does not write")
        self.storages[pid[2]] = max(self.storages.get(pid[2], 0), pid[4] * pid[1].itemsize)
        return _Inert()


def declared_storage_bytes(stream: io.BytesIO, what: str) -> int:
    """The bytes the legacy pickle at ``stream``'s position (already scanned by ``scan_pickle``) declares for its
    storages together, each storage once. WeightsFileError when a storage reference is not torch.save's."""
    try:
        unpickler = _DeclaredStorages(stream)
        unpickler.load()
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, EOFError, IndexError, KeyError,
            RecursionError) as error:
        raise WeightsFileError(f"{what} is not a pickle torch.save wrote ({str(error)[:100]}); the file is damaged "
                               "or was not written by torch.save.") from error
    return sum(unpickler.storages.values())
