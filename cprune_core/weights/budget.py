"""What a model's files say about their tensors, checked before any value is read.

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
from typing import TYPE_CHECKING

from ..errors import WeightsFileError

if TYPE_CHECKING:
    import torch

__all__ = ["WeightsBudget", "DEFAULT_BUDGET", "LOCAL_BUDGET", "MAX_IN_MEMORY_BYTES", "StoredTensor", "FLOAT_DTYPES",
           "check_stored_tensors", "oversized", "describe_tensor"]

FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})  # what a layer may hold (read as float32)
# Formats read whole into memory (an ONNX protobuf with its weights inside; PyTorch's legacy format): 2 GiB at
# most, protobuf's own limit. Safetensors and torch.save's zip are read a tensor at a time, whatever their size.
MAX_IN_MEMORY_BYTES = 2 * 2**30


@dataclass(frozen=True)
class WeightsBudget:
    """The most a model's files may hold.

    ``max_file_bytes``: one file's size on disk (an upload's cap), None for any size (listing reads
    headers only, and a layer's own bytes are read only when it is chosen). ``max_tensor_elements``:
    the largest tensor read as one layer (2^28 is 1 GiB once read as float32; Llama-3-8B's MLP matrices
    have 59 million); a larger one is listed among the skipped tensors (a checkpoint holding one is
    refused). ``max_tensors``: tensors in one model, all its files together (a state dict of aliases,
    a header of 10^6 entries are refused before they are expanded). ``external_files``: whether an ONNX
    model may read its external data files (inside its own folder); an upload may not (its folder is
    the server's, shared with other visitors' uploads).
    """

    max_file_bytes: int | None = None
    max_tensor_elements: int = 2**28
    max_tensors: int = 100_000
    external_files: bool = False


DEFAULT_BUDGET = WeightsBudget()
LOCAL_BUDGET = WeightsBudget(external_files=True)  # a model on the local disk: the command line, a server's folders


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
    import torch  # here: the budget's limits are read by the command line's --help, which imports no torch

    layout = str(tensor.layout).removeprefix("torch.")
    dense = tensor.layout == torch.strided and tensor.device.type != "meta"
    stored = None
    if dense:
        # Bytes from the tensor's first element to the end of its storage: what its values can occupy.
        stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    return StoredTensor(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), tensor.element_size(),
                        stored, layout, tensor.device.type)


def oversized(tensor: StoredTensor, budget: WeightsBudget) -> str:
    """Why ``tensor`` is too large to read as one layer, in words ("" when it is not)."""
    if tensor.numel > budget.max_tensor_elements:
        return (f"has {tensor.numel:,} elements (shape {list(tensor.shape)}), over the limit of "
                f"{budget.max_tensor_elements:,} per tensor")
    return ""


def _no_values(tensor: StoredTensor) -> str:
    if tensor.layout != "strided":
        return (f"is a {tensor.layout} tensor of shape {list(tensor.shape)}; only dense tensors are read "
                "(save tensor.to_dense())")
    if tensor.device != "cpu":
        return f"is a {tensor.device} tensor: it has a shape but no values (save the real weights)"
    if any(size < 0 for size in tensor.shape):
        return f"has a negative size in its shape {list(tensor.shape)}"
    return ""


def _claims_more(tensor: StoredTensor) -> str:
    if tensor.itemsize is not None and tensor.stored_bytes is not None \
            and tensor.numel * tensor.itemsize > tensor.stored_bytes:
        return (f"claims {tensor.numel:,} elements ({tensor.numel * tensor.itemsize:,} bytes) but the file holds "
                f"{tensor.stored_bytes:,} bytes for it: an expanded or broadcast view, or a damaged file "
                "(save tensor.contiguous().clone())")
    return ""


def check_stored_tensors(tensors: Iterable[StoredTensor], file_name: str, budget: WeightsBudget,
                         file_bytes: int | None = None, strict: bool = True) -> None:
    """Refuse a file whose tensors could not be read within ``budget``, before any value is read.

    Parameters
    ----------
    tensors : the file's tensors as its metadata describes them (``describe_tensor`` for loaded
        torch tensors; the readers build them from headers), each distinct tensor once (an alias of
        another, sharing its values, left out).
    file_name : named in the message.
    budget : the limits.
    file_bytes : the bytes the file (or the model's files together) occupies on disk; None: not checked.
    strict : whether a tensor over ``budget.max_tensor_elements`` refuses the file (a checkpoint, read
        whole); False where it is only listed as no layer (a model to explore).

    Raises
    ------
    WeightsFileError
        naming the first tensor that exceeds ``budget.max_tensor_elements`` (when ``strict``), is not
        dense (sparse COO, CSR, ...), has no values (meta), or claims more elements than the bytes the
        file holds for it (an expanded or broadcast view); or when there are more than
        ``budget.max_tensors``, or all together hold more elements than ``file_bytes``.

    Example
    -------
    >>> import torch
    >>> view = torch.zeros(1).expand(10**6, 10**6)  # 4 bytes shown as 4 TB
    >>> check_stored_tensors([describe_tensor("w", view)], "x.pt", WeightsBudget())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cprune_core.errors.WeightsFileError: x.pt: tensor 'w' has 1,000,000,000,000 elements ...
    """
    total = count = 0
    for tensor in tensors:
        why = _no_values(tensor) or (oversized(tensor, budget) if strict else "") or _claims_more(tensor)
        if why:
            raise WeightsFileError(f"{file_name}: tensor {tensor.name!r} {why}.")
        total += tensor.numel
        count += 1
    if count > budget.max_tensors:
        raise WeightsFileError(f"{file_name} holds {count:,} tensors; the limit is {budget.max_tensors:,} per model.")
    if file_bytes is not None and total > file_bytes:  # every element stored takes a byte at least
        raise WeightsFileError(f"{file_name}: its tensors hold {total:,} elements together, more than the "
                               f"{file_bytes:,} bytes it occupies: views of shared storage. Save each tensor on its "
                               "own (tensor.clone()).")
