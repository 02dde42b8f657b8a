"""Any model's weights as a list of layers: a ``.safetensors`` file, an ``.onnx`` model, a PyTorch state dict,
or a folder (a Hugging Face checkpoint's index and shards, a folder of safetensors files).

Every floating-point tensor of rank 2 to 5 with two neurons or more, each with a vector of two values or
more, is a layer: rows are neurons for a Linear weight, output channels for a Conv1d/2d/3d weight, and
tensors stored otherwise are turned round (``roles``). fp16, bf16 and fp64 values are read as float32.
Every other tensor is listed in ``skipped`` with why (a bias, an integer tensor, one over the per-layer
budget, a tied copy of another); a model with no layer at all is refused. Each file's metadata is read
once, as the model is opened; a layer's values are read from its own bytes when it is asked for.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, WeightsFileError
from ..layers import finite_rows
from .budget import DEFAULT_BUDGET, StoredTensor, WeightsBudget, check_stored_tensors, oversized
from .folders import model_layout
from .formats import FORMATS, open_file
from .names import layer_names, natural_key, printable
from .roles import ROWS, TensorRole, arrange, kind_of, name_role, neurons_first_shape, no_layer_reason

__all__ = ["WeightLayer", "WeightsFile", "open_weights_file", "read_weights_file"]


@dataclass(frozen=True)
class WeightLayer:
    """A tensor of a model seen as a layer of neurons."""

    name: str  # printable, without a trailing ".weight" ("features.0"), as a module would be named
    tensor: str  # the tensor's name in the file ("features.0.weight"), as written there
    shape: tuple[int, ...]  # neurons first
    dtype: str  # as stored: "float32", "float16", "bfloat16" or "float64"
    role: TensorRole = ROWS
    stored_shape: tuple[int, ...] = ()
    tied: tuple[str, ...] = ()  # other names of the very same values

    @property
    def neurons(self) -> int:
        return self.shape[0]

    @property
    def vector_length(self) -> int:
        """Length of each neuron's weight vector: inputs, or in_channels x kernel size."""
        return math.prod(self.shape[1:])

    @property
    def transposed(self) -> bool:
        return self.role.arrangement == "columns"

    @property
    def kind(self) -> str:
        return kind_of(len(self.stored_shape or self.shape), self.role)

    @property
    def note(self) -> str:
        """For people: the tensor, its stored shape and dtype, its layout, its other names."""
        parts = [f"tensor {printable(self.tensor)} {list(self.stored_shape or self.shape)}, {self.dtype}"]
        parts += [self.role.where] if self.role.where else []
        parts += [f"tied: also {', '.join(map(printable, self.tied))}"] if self.tied else []
        return "; ".join(parts)


def _gather(sources: list, owners: dict[str, Path] | None) -> tuple[list[tuple[StoredTensor, object]], list]:
    """(each tensor with its source, in the model's order, each name once; (name, why) of those left out)."""
    entries: list = []
    left: list = []
    first: dict[str, object] = {}
    for source in sources:
        left += list(source.unread)
        for tensor in source.stored:
            owner = None if owners is None else owners.get(tensor.name)
            if owners is not None and owner != source.path:
                left.append((tensor.name, f"in {source.path.name} but " + (
                    f"the index places it in {owner.name}" if owner else "not in the index")))
            elif tensor.name in first:
                left.append((tensor.name, f"also in {source.path.name}: the one in {first[tensor.name].path.name} "
                                          "is read"))
            else:
                first[tensor.name] = source
                entries.append((tensor, source))
    if owners is not None and (missing := next((name for name in owners if name not in first), None)) is not None:
        raise WeightsFileError(f"The index names tensor {missing[:80]!r} in {owners[missing].name}, which does not "
                               "hold it: the checkpoint is incomplete or damaged.")
    return entries, left


def _aliases(entries: list[tuple[StoredTensor, object]]) -> dict[str, str]:
    """Name -> the first name holding the very same values (tied weights, aliases of one storage)."""
    seen: dict[tuple, str] = {}
    aliases = {}
    for tensor, source in entries:
        key = source.identity(tensor.name)
        if key is not None:
            aliases.update({tensor.name: seen[key]} if key in seen else {})
            seen.setdefault(key, tensor.name)
    return aliases


class WeightsFile:
    """An opened model: its layers from metadata, their values read on demand.

    Build one with ``open_weights_file``. ``layers`` lists the layers in the model's order (natural order of
    names for safetensors, the file's own otherwise); ``shapes`` every tensor's stored shape (to tell which
    backbone the file fits); ``skipped`` every other tensor as (printable name, why); ``files`` the files
    read; ``metadata`` the file's text entries beside its tensors (safetensors' ``__metadata__``, the strings
    beside a torch file's "state_dict", ONNX's metadata_props), untrusted text.
    """

    def __init__(self, path: Path, file_format: str, sources: list, budget: WeightsBudget = DEFAULT_BUDGET,
                 strict: bool = False, owners: dict[str, Path] | None = None):
        self.path, self.format = path, file_format
        self.files = [source.path for source in sources]
        self.metadata: dict[str, str] = dict(sources[0].metadata) if len(sources) == 1 else {}
        entries, left = _gather(sources, owners)
        if file_format in ("safetensors", "shards", "folder"):  # bytes are ordered by dtype, not as the model is
            entries.sort(key=lambda entry: natural_key(entry[0].name))
        self._where = {tensor.name: source for tensor, source in entries}
        self.shapes = {tensor.name: tensor.shape for tensor, _ in entries}
        aliases = _aliases(entries)
        sizes = [source.size for source in sources]
        check_stored_tensors((tensor for tensor, _ in entries if tensor.name not in aliases), path.name, budget,
                             None if None in sizes else sum(sizes), strict)
        self.layers: list[WeightLayer] = []
        self.skipped: list[tuple[str, str]] = [(printable(name), why) for name, why in left]
        self._build(entries, aliases, budget, strict)
        self._by_name = {layer.name: layer for layer in self.layers}
        self._by_tensor = {key: layer for layer in self.layers for key in (layer.tensor, printable(layer.tensor))}
        self._why = {name: why for name, why in self.skipped}

    def _build(self, entries: list, aliases: dict[str, str], budget: WeightsBudget, strict: bool) -> None:
        names = layer_names(tensor.name for tensor, _ in entries)
        tied = defaultdict(list)
        for name, first in aliases.items():
            tied[first].append(name)
        for tensor, source in entries:
            role = source.roles.get(tensor.name) or (name_role(tensor.name, tensor.shape) if source.name_hints else ROWS)
            if tensor.name in aliases:
                why = f"the same values as {aliases[tensor.name]!r} (tied or shared weights): listed once"
            else:
                why = no_layer_reason(tensor, role) or ("" if strict else oversized(tensor, budget))
            if why:
                self.skipped.append((printable(tensor.name), why))
                continue
            self.layers.append(WeightLayer(names[tensor.name], tensor.name, neurons_first_shape(tensor.shape, role),
                                           tensor.dtype, role, tensor.shape, tuple(tied.get(tensor.name, ()))))

    def __repr__(self) -> str:
        return f"WeightsFile({self.path.name!r}, {self.format}, {len(self.layers)} layers)"

    @property
    def description(self) -> str:
        """What the model is, for people: "a safetensors file", "a sharded checkpoint: ... (3 files)"."""
        return FORMATS[self.format] + (f" ({len(self.files)} files)" if len(self.files) > 1 else "")

    def layer(self, name: str) -> WeightLayer:
        """The layer called ``name`` (its printable name, or the name as the file writes it, or its tensor's
        name); WeightsFileError saying why for a
        tensor that is no layer, ConfigError naming a few layers for any other name."""
        found = self._by_name.get(name) or self._by_name.get(printable(name)) or self._by_tensor.get(name)
        if found is not None:
            return found
        if printable(name) in self._why:
            raise WeightsFileError(f"{self.path.name}: {name!r} is no layer: {self._why[printable(name)]}.")
        some = ", ".join(layer.name for layer in self.layers[:5])
        raise ConfigError(f"{self.path.name} has no layer {name!r}; its {len(self.layers)} layers include "
                          f"{some}.")

    def weight(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The layer's weights as float32, neurons first, or only neurons ``start:stop`` of them (then only their
        bytes are read, when the layer is stored neurons first); NonFiniteWeightsError naming the layer when a
        value is NaN or Inf, ConfigError for rows outside the layer."""
        layer = self.layer(name)
        if rows is not None and not 0 <= rows[0] <= rows[1] <= layer.neurons:
            raise ConfigError(f"Rows {rows[0]}:{rows[1]} are outside layer {layer.name}'s {layer.neurons} neurons.")
        direct = rows if layer.role.arrangement == "rows" else None
        values = arrange(self._where[layer.tensor].read(layer.tensor, direct), layer.role)
        values = values[rows[0]:rows[1]] if rows is not None and direct is None else values
        finite_rows(values.flatten(1), layer.name, 0 if rows is None else rows[0])
        return values

    def weight_vectors(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """One row per neuron (neurons x vector_length), float32: what graph.cosine_similarity and the criteria take."""
        return self.weight(name, rows).flatten(1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the model by its name, as stored (ONNX floats as float32): a state dict."""
        state: dict[str, torch.Tensor] = {}
        for source in dict.fromkeys(self._where.values()):
            every = source.tensors()
            state.update({name: every[name] for name, where in self._where.items() if where is source})
        return state


def read_weights_file(path: str | Path, budget: WeightsBudget = DEFAULT_BUDGET) -> WeightsFile:
    """The tensors of one weights file, checked as ``open_weights_file`` checks them and every tensor within
    ``budget.max_tensor_elements``, with or without a layer among them: what a checkpoint to load needs."""
    path = Path(path)
    file_format, source = open_file(path, budget)
    return WeightsFile(path, file_format, [source], budget, strict=True)


def open_weights_file(path: str | Path, budget: WeightsBudget = DEFAULT_BUDGET) -> WeightsFile:
    """Open a model and list its layers without reading their values.

    Parameters
    ----------
    path : a ``.safetensors`` file, an ``.onnx`` model, a PyTorch state dict (``.pt``, ``.pth``, ``.bin``;
        ``torch.save(model.state_dict())``, read with ``weights_only=True``), a checkpoint's index
        (``model.safetensors.index.json``, its shards beside it), or a folder holding an index, safetensors
        files or one weights file.
    budget : what may be read (WeightsBudget's defaults: files of any size, 2^28 elements per layer, 100,000
        tensors, no ONNX external data; ``LOCAL_BUDGET`` reads external data inside the model's folder).

    Returns
    -------
    WeightsFile whose ``layers`` are its float tensors of rank 2 to 5, and ``skipped`` the others with why.

    Raises
    ------
    WeightsFileError
        the model is missing, over the budget, truncated or damaged, not the format its extension says,
        holds a tensor that is sparse, has no values (meta) or is an expanded view of less storage, names
        files outside its folder, is a TorchScript program, or holds no float layer.

    Example
    -------
    >>> import tempfile, safetensors.torch
    >>> path = Path(tempfile.mkdtemp()) / "mlp.safetensors"
    >>> safetensors.torch.save_file({"fc.weight": torch.randn(8, 4), "fc.bias": torch.zeros(8)}, path)
    >>> weights = open_weights_file(path)
    >>> [(layer.name, layer.shape) for layer in weights.layers], weights.skipped[0][0]
    ([('fc', (8, 4))], 'fc.bias')
    >>> weights.weight_vectors("fc").shape
    torch.Size([8, 4])
    """
    path = Path(path)
    layout = model_layout(path, budget)
    opened, tensors = [], 0
    for file in layout.files:  # each file within the cap, and the model: one file over it at most is parsed
        opened.append(open_file(file, budget))
        tensors += len(opened[-1][1].stored)
        if tensors > budget.max_tensors:
            where = f" in its first {len(opened)} files" if len(layout.files) > 1 else ""
            raise WeightsFileError(f"{path.name} holds more than {budget.max_tensors:,} tensors{where}; the limit "
                                   f"is {budget.max_tensors:,} per model.")
    file_format = opened[0][0] if layout.format == "file" else layout.format
    weights = WeightsFile(path, file_format, [source for _, source in opened], budget, owners=layout.owners)
    if not weights.layers:
        raise WeightsFileError(_no_layer(weights, budget))
    return weights


def _no_layer(weights: WeightsFile, budget: WeightsBudget) -> str:
    """Why a model holds no layer, in one sentence: a tensor over the budget first (it would be one)."""
    name = weights.path.name
    large = next(((tensor, why) for tensor, why in weights.skipped if why.startswith("has ") and "over the limit" in why),
                 None)
    if large is not None:
        return f"{name}: tensor '{large[0]}' {large[1]}; it holds no other layer to explore."
    found = f"; none of its {len(weights.skipped)} tensor(s) is one (first: {weights.skipped[0][0]}: " \
            f"{weights.skipped[0][1]})" if weights.skipped else ""
    return (f"{name} holds no floating-point weight of rank 2 (Linear) to 5 (Conv3d) with two neurons or more"
            f"{found}: there is no layer to explore.")
