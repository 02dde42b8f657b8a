"""What a file says about its tensors, checked before any value is read.

A file's size on disk says nothing of its tensors' size in memory: ``torch.save`` keeps a view as
its storage plus a shape and strides, so 4 bytes can come back as a 10^12-element tensor
(``expand``, ``as_strided``); a sparse tensor declares any shape; a meta tensor holds no values
at all; a header may claim more elements than the bytes it points to. Reading, copying or even
checking such a tensor for NaN allocates its whole size. So every reader describes each tensor
from the file's metadata as a ``StoredTensor`` and passes them all to ``check_stored_tensors``
before anything touches a value.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ..errors import WeightsFileError

__all__ = ["WeightsBudget", "DEFAULT_BUDGET", "StoredTensor", "FLOAT_DTYPES", "check_stored_tensors", "describe_tensor"]

FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})  # what a layer may hold (read as float32)


@dataclass(frozen=True)
class WeightsBudget:
    """The most a weights file may hold.

    ``max_file_bytes``: the file's size on disk. ``max_tensor_elements``: one tensor's elements
    (2^28 is 1 GiB once read as float32; VGG16's largest weight has 103 million). The elements of
    all tensors together may not exceed ``max_file_bytes``: every element a file stores takes at
    least one byte of it, so more means views of shared or missing storage.
    """

    max_file_bytes: int = 2 * 2**30
    max_tensor_elements: int = 2**28


DEFAULT_BUDGET = WeightsBudget()


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as a file describes it, before its values are read."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name ("float32", "bfloat16", "int64", ...), or the file's own for a type torch lacks
    itemsize: int | None  # bytes per element; None where elements have no fixed size (strings, 4-bit types)
    stored_bytes: int | None  # bytes the file holds for the values; None for a layout with no dense values
    layout: str = "strided"  # torch's layout name: "strided" (dense), "sparse_coo", "sparse_csr", ...
    device: str = "cpu"  # "meta": a shape with no values

    @property
    def numel(self) -> int:
        return math.prod(self.shape)  # Python integers: no overflow for absurd shapes

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


def describe_tensor(name: str, tensor: torch.Tensor) -> StoredTensor:
    """A loaded tensor's ``StoredTensor``, from its metadata only (never its values)."""
    layout = str(tensor.layout).removeprefix("torch.")
    dense = tensor.layout == torch.strided and tensor.device.type != "meta"
    stored = None
    if dense:
        # Bytes from the tensor's first element to the end of its storage: what its values can occupy.
        stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    return StoredTensor(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), tensor.element_size(),
                        stored, layout, tensor.device.type)


def _refusal(tensor: StoredTensor, budget: WeightsBudget) -> str:
    """Why ``tensor`` cannot be read, in words ("" when it can)."""
    if tensor.layout != "strided":
        return (f"is a {tensor.layout} tensor of shape {list(tensor.shape)}; only dense tensors are read "
                "(save tensor.to_dense())")
    if tensor.device != "cpu":
        return f"is a {tensor.device} tensor: it has a shape but no values (save the real weights)"
    if any(size < 0 for size in tensor.shape):
        return f"has a negative size in its shape {list(tensor.shape)}"
    if tensor.numel > budget.max_tensor_elements:
        return (f"has {tensor.numel:,} elements (shape {list(tensor.shape)}), over the limit of "
                f"{budget.max_tensor_elements:,} per tensor")
    if tensor.itemsize is not None and tensor.stored_bytes is not None \
            and tensor.numel * tensor.itemsize > tensor.stored_bytes:
        return (f"claims {tensor.numel:,} elements ({tensor.numel * tensor.itemsize:,} bytes) but the file holds "
                f"{tensor.stored_bytes:,} bytes for it: an expanded or broadcast view, or a damaged file "
                "(save tensor.contiguous().clone())")
    return ""


def check_stored_tensors(tensors: Iterable[StoredTensor], file_name: str, budget: WeightsBudget) -> None:
    """Refuse a file whose tensors could not be read within ``budget``, before any value is read.

    Parameters
    ----------
    tensors : the file's tensors as its metadata describes them (``describe_tensor`` for loaded
        torch tensors; the readers build them from headers).
    file_name : named in the message.
    budget : the limits.

    Raises
    ------
    WeightsFileError
        naming the first tensor that is not dense (sparse COO, CSR, ...), has no values (meta),
        exceeds ``budget.max_tensor_elements``, or claims more elements than the bytes the file
        holds for it (an expanded or broadcast view); or when all tensors together hold more
        elements than ``budget.max_file_bytes``.

    Example
    -------
    >>> view = torch.zeros(1).expand(10**6, 10**6)  # 4 bytes shown as 4 TB
    >>> check_stored_tensors([describe_tensor("w", view)], "x.pt", WeightsBudget())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cprune_core.errors.WeightsFileError: x.pt: tensor 'w' has 1,000,000,000,000 elements ...
    """
    total = 0
    for tensor in tensors:
        why = _refusal(tensor, budget)
        if why:
            raise WeightsFileError(f"{file_name}: tensor {tensor.name!r} {why}.")
        total += tensor.numel
    if total > budget.max_file_bytes:
        raise WeightsFileError(f"{file_name}: its tensors hold {total:,} elements together, more than its "
                               f"{budget.max_file_bytes:,}-byte budget allows: views of shared storage. "
                               "Save each tensor on its own (tensor.clone()).")
