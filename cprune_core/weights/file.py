"""Any weights file as a list of layers: ``.safetensors``, ``.onnx``, or a PyTorch state dict.

Every floating-point tensor of rank 2 (rows are neurons, as a Linear layer's) or rank 4 (output
filters are neurons, as a Conv2d layer's) is a layer. fp16, bf16 and fp64 values are read as
float32. Other tensors of those ranks (integer, boolean, complex, 8-bit float) are listed in
``skipped`` with the reason; a file with no layer at all is refused. The format is read from the
file's first bytes, and a file whose extension claims another format is refused.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, WeightsFileError
from ..layers import finite_rows
from .budget import DEFAULT_BUDGET, StoredTensor, WeightsBudget, check_stored_tensors
from .onnx_format import read_onnx
from .safetensors_format import looks_like_safetensors, read_safetensors_header, read_safetensors_tensors
from .torch_format import ZIP_MAGIC, is_legacy_torch, read_torch_archive

__all__ = ["FORMATS", "EXTENSIONS", "WeightLayer", "WeightsFile", "open_weights_file", "read_weights_file",
           "detect_format"]

FORMATS = {"safetensors": "a safetensors file", "torch": "a PyTorch state dict (torch.save)",
           "onnx": "an ONNX model"}
EXTENSIONS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch", ".onnx": "onnx"}
ONNX_FIRST_BYTE = b"\x08"  # field 1 (ir_version, a varint) opens every ModelProto that ONNX writes


@dataclass(frozen=True)
class WeightLayer:
    """A float tensor of rank 2 or 4 of a weights file, seen as a layer of neurons."""

    name: str  # the tensor's name without a trailing ".weight" ("features.0"), as a module would be named
    tensor: str  # the tensor's name in the file ("features.0.weight")
    shape: tuple[int, ...]  # neurons first (an ONNX MatMul weight, stored inputs x outputs, turned round)
    dtype: str  # as stored: "float32", "float16", "bfloat16" or "float64"
    transposed: bool = False  # stored inputs x outputs (ONNX MatMul, Gemm without transB)

    @property
    def neurons(self) -> int:
        return self.shape[0]

    @property
    def vector_length(self) -> int:
        """Length of each neuron's weight vector: inputs, or in_channels x kernel height x width."""
        return math.prod(self.shape[1:])

    @property
    def kind(self) -> str:
        return "Linear-like (rank 2)" if len(self.shape) == 2 else "Conv2d-like (rank 4)"


def _layer_names(stored: list[StoredTensor]) -> dict[str, str]:
    """Tensor name -> layer name: "x.weight" becomes "x" unless another tensor is called "x"."""
    taken = {tensor.name for tensor in stored}
    return {tensor.name: (short if (short := tensor.name.removesuffix(".weight")) == tensor.name
                          or short not in taken else tensor.name) for tensor in stored}


class WeightsFile:
    """An opened weights file: its layers from metadata, their values read on demand.

    Build one with ``open_weights_file``. ``layers`` lists the layers in file order;
    ``shapes`` every tensor's stored shape (to tell which backbone the file fits);
    ``skipped`` the rank-2 and rank-4 tensors that are no layer, with the reason;
    ``metadata`` the file's text entries beside its tensors (safetensors' ``__metadata__``, the strings
    beside a torch file's "state_dict"), untrusted text.
    """

    def __init__(self, path: Path, file_format: str, stored: list[StoredTensor],
                 read: Callable[[list[str]], dict[str, torch.Tensor]], transposed: frozenset[str] = frozenset(),
                 metadata: dict[str, str] | None = None):
        self.path, self.format = path, file_format
        self.metadata = metadata or {}
        self._read = read
        self.shapes = {tensor.name: tensor.shape for tensor in stored}
        names = _layer_names(stored)
        self.layers: list[WeightLayer] = []
        self.skipped: dict[str, str] = {}
        for tensor in stored:
            if len(tensor.shape) not in (2, 4):
                continue
            if not tensor.is_float:
                self.skipped[tensor.name] = (f"{tensor.dtype}: not a floating-point weight (integer, boolean, complex "
                                             "and 8-bit float tensors are not read as layers)")
            elif tensor.numel == 0:
                self.skipped[tensor.name] = f"empty (shape {list(tensor.shape)})"
            else:
                turned = tensor.name in transposed and len(tensor.shape) == 2
                self.layers.append(WeightLayer(names[tensor.name], tensor.name,
                                               tensor.shape[::-1] if turned else tensor.shape, tensor.dtype, turned))
        self._by_name = {layer.name: layer for layer in self.layers}

    def __repr__(self) -> str:
        return f"WeightsFile({self.path.name!r}, {self.format}, {len(self.layers)} layers)"

    def layer(self, name: str) -> WeightLayer:
        """The layer called ``name`` (or whose tensor is called ``name``); ConfigError naming a few layers."""
        found = self._by_name.get(name) or next((layer for layer in self.layers if layer.tensor == name), None)
        if found is not None:
            return found
        if name in self.skipped:
            raise WeightsFileError(f"{self.path.name}: {name!r} is no layer: {self.skipped[name]}.")
        some = ", ".join(layer.name for layer in self.layers[:5])
        raise ConfigError(f"{self.path.name} has no layer {name!r}; its {len(self.layers)} layers include {some}.")

    def weight(self, name: str) -> torch.Tensor:
        """The layer's weights as float32, neurons first; NonFiniteWeightsError naming the layer when a value
        is NaN or Inf."""
        layer = self.layer(name)
        values = self._read([layer.tensor])[layer.tensor].float()
        values = values.T if layer.transposed else values
        finite_rows(values.flatten(1), layer.name)
        return values

    def weight_vectors(self, name: str) -> torch.Tensor:
        """One row per neuron (neurons x vector_length), float32: what graph.cosine_similarity and the criteria take."""
        return self.weight(name).flatten(1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the file by its name, as stored (ONNX floats as float32): a state dict."""
        return self._read(list(self.shapes))


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
    if size > budget.max_file_bytes:
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


def read_weights_file(path: str | Path, budget: WeightsBudget = DEFAULT_BUDGET) -> WeightsFile:
    """The tensors of any weights file, checked as ``open_weights_file`` checks them, with or without a
    layer among them: what a checkpoint to load needs."""
    path = Path(path)
    file_format, size = _check_file(path, budget)
    if file_format == "safetensors":
        stored, metadata = read_safetensors_header(path, size)
        check_stored_tensors(stored, path.name, budget)
        return WeightsFile(path, file_format, stored, lambda names: read_safetensors_tensors(path, names),
                           metadata=metadata)
    if file_format == "onnx":
        model = read_onnx(path)
        check_stored_tensors(model.stored, path.name, budget)
        return WeightsFile(path, file_format, model.stored, model.read, frozenset(model.transposed))
    state, stored, metadata = read_torch_archive(path, size, budget)
    return WeightsFile(path, file_format, stored, lambda names: {name: state[name] for name in names},
                       metadata=metadata)


def open_weights_file(path: str | Path, budget: WeightsBudget = DEFAULT_BUDGET) -> WeightsFile:
    """Open a weights file and list its layers without reading their values.

    Parameters
    ----------
    path : a ``.safetensors`` file, an ``.onnx`` model, or a PyTorch state dict (``.pt``, ``.pth``,
        ``.bin``; ``torch.save(model.state_dict())``, read with ``weights_only=True``).
    budget : the largest file and tensor accepted (WeightsBudget's defaults: 2 GiB, 2^28 elements).

    Returns
    -------
    WeightsFile whose ``layers`` are its float tensors of rank 2 or 4.

    Raises
    ------
    WeightsFileError
        the file is missing, over the budget, truncated or damaged, not the format its extension
        says, holds a tensor that is sparse, has no values (meta) or is an expanded view of less
        storage, keeps ONNX weights in other files, or holds no float layer.

    Example
    -------
    >>> import tempfile, safetensors.torch
    >>> path = Path(tempfile.mkdtemp()) / "mlp.safetensors"
    >>> safetensors.torch.save_file({"fc.weight": torch.randn(8, 4), "fc.bias": torch.zeros(8)}, path)
    >>> weights = open_weights_file(path)
    >>> [(layer.name, layer.shape) for layer in weights.layers]
    [('fc', (8, 4))]
    >>> weights.weight_vectors("fc").shape
    torch.Size([8, 4])
    """
    weights = read_weights_file(path, budget)
    if not weights.layers:
        skipped = weights.skipped
        found = f"; {len(skipped)} of rank 2 or 4 are not floating point (first: {next(iter(skipped))}: " \
                f"{next(iter(skipped.values()))})" if skipped else ""
        raise WeightsFileError(f"{weights.path.name} holds no floating-point weight of rank 2 (Linear) or 4 (Conv2d) "
                               f"among its {len(weights.shapes)} tensor(s){found}: there is no layer to explore.")
    return weights
