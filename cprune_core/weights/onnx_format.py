"""``.onnx`` models: every tensor a model holds as a weight, with what its use says of its layout.

The file is counted field by field (``onnx_scan``) before it is parsed from its bytes (never
``onnx.load(path)``). Its weights are the initializers of the top-level graph and of every subgraph (an
``If``'s branches, a ``Loop``'s or ``Scan``'s body), and the ``value`` tensors of ``Constant`` nodes (named by
the node's output); a sparse one is listed with why it is not read. An initializer whose values live in
another file (external data) is read from that file when the budget allows it (``external_files``: never for
an upload), and only inside the model's own folder (``raw.model_file``). A node's use of a tensor tells its
layout (``roles``): ``MatMul`` and ``Gemm`` without ``transB`` store inputs x outputs, ``ConvTranspose`` in x
out/groups x kernel, ``LSTM``/``GRU``/``RNN`` directions x gates x inputs; a node's bias is no layer.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import WeightsFileError
from .budget import MAX_IN_MEMORY_BYTES, StoredTensor, WeightsBudget
from .onnx_scan import scan_onnx
from .raw import model_file, read_rows
from .roles import TensorRole

__all__ = ["OnnxFile"]

# ONNX data type -> (torch dtype name, bytes per element, the typed field holding values when not raw,
# field entries per element)
DTYPES = {
    onnx.TensorProto.FLOAT: ("float32", 4, "float_data", 1),
    onnx.TensorProto.FLOAT16: ("float16", 2, "int32_data", 1),
    onnx.TensorProto.BFLOAT16: ("bfloat16", 2, "int32_data", 1),
    onnx.TensorProto.DOUBLE: ("float64", 8, "double_data", 1),
    onnx.TensorProto.UINT8: ("uint8", 1, "int32_data", 1),
    onnx.TensorProto.INT8: ("int8", 1, "int32_data", 1),
    onnx.TensorProto.UINT16: ("uint16", 2, "int32_data", 1),
    onnx.TensorProto.INT16: ("int16", 2, "int32_data", 1),
    onnx.TensorProto.INT32: ("int32", 4, "int32_data", 1),
    onnx.TensorProto.INT64: ("int64", 8, "int64_data", 1),
    onnx.TensorProto.UINT32: ("uint32", 4, "uint64_data", 1),
    onnx.TensorProto.UINT64: ("uint64", 8, "uint64_data", 1),
    onnx.TensorProto.BOOL: ("bool", 1, "int32_data", 1),
    onnx.TensorProto.COMPLEX64: ("complex64", 8, "float_data", 2),
    onnx.TensorProto.COMPLEX128: ("complex128", 16, "double_data", 2),
}
RECURRENT = {"LSTM": 3, "GRU": 3, "RNN": 3}  # op -> index of its bias input (W and R before it)


def _graphs(graph: onnx.GraphProto, where: str = "") -> Iterator[tuple[onnx.GraphProto, str]]:
    """``graph`` and every subgraph below it (If branches, Loop and Scan bodies), with where each lies."""
    yield graph, where
    for node in graph.node:
        for attribute in node.attribute:
            for index, sub in enumerate([attribute.g] if attribute.HasField("g") else list(attribute.graphs)):
                label = f"{attribute.name}{'' if attribute.HasField('g') else f'[{index}]'}"
                yield from _graphs(sub, f"{where}{' > ' if where else ''}{node.op_type} node {node.name!r} ({label})")


def _value_tensors(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, onnx.TensorProto | None, str]]:
    """(name, tensor or None when it is not read, where) of the graph's initializers and Constant values."""
    inside = f" in {where}" if where else ""
    for tensor in graph.initializer:
        yield tensor.name, tensor, f"an initializer{inside}"
    for sparse in graph.sparse_initializer:
        yield sparse.values.name, None, f"a sparse initializer{inside}"
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            value = next((a for a in node.attribute if a.name in ("value", "sparse_value")), None)
            if value is not None:
                yield (node.output[0], value.t if value.name == "value" else None,
                       f"{'a sparse' if value.name == 'sparse_value' else 'the'} value of Constant node "
                       f"{node.name!r}{inside}")


def _roles(graphs: list[onnx.GraphProto]) -> dict[str, TensorRole]:
    """What the nodes' use of each tensor says of its layout (see the module's docstring)."""
    roles: dict[str, TensorRole] = {}
    for graph in graphs:
        for node in graph.node:
            inputs, op = list(node.input), node.op_type
            attributes = {a.name: a.i for a in node.attribute if a.type == onnx.AttributeProto.INT}
            if op == "MatMul" and len(inputs) > 1 or op == "Gemm" and len(inputs) > 1 and not attributes.get("transB"):
                roles[inputs[1]] = TensorRole("columns", where=f"stored inputs x outputs ({op})")
            if op == "ConvTranspose" and len(inputs) > 1:
                roles[inputs[1]] = TensorRole("transposed_conv", max(1, attributes.get("group", 1)),
                                              where=f"ConvTranspose node {node.name!r}")
            if op in RECURRENT:
                for index, label in ((1, "W"), (2, "R")):
                    if len(inputs) > index:
                        roles[inputs[index]] = TensorRole("gates", where=f"{op} {label}: directions x gates flattened")
            bias = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, **RECURRENT}.get(op)
            if bias is not None and len(inputs) > bias and inputs[bias]:
                roles[inputs[bias]] = TensorRole(skip=f"the bias of {op} node {node.name!r}")
    return roles


def _stored(name: str, tensor: onnx.TensorProto, external_bytes: int | None) -> StoredTensor:
    """A tensor as a StoredTensor (types torch lacks keep ONNX's name and are never read)."""
    shape = tuple(int(size) for size in tensor.dims)
    if tensor.data_type not in DTYPES:
        dtype = onnx.TensorProto.DataType.Name(tensor.data_type).lower() \
            if tensor.data_type in onnx.TensorProto.DataType.values() else f"type {tensor.data_type}"
        return StoredTensor(name, shape, dtype, None, None)
    dtype, itemsize, field, per_element = DTYPES[tensor.data_type]
    if external_bytes is not None:
        stored = external_bytes
    elif tensor.HasField("raw_data"):
        stored = len(tensor.raw_data)
    else:
        stored = len(getattr(tensor, field)) // per_element * itemsize
    return StoredTensor(name, shape, dtype, itemsize, stored)


def _parse(path: Path, data: bytes, budget: WeightsBudget) -> onnx.ModelProto:
    """The model, once its fields are counted; WeightsFileError when it is not an ONNX model."""
    scan_onnx(data, path.name, budget.max_tensors)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise WeightsFileError(f"{path.name} is not an ONNX model (it cannot be parsed: {str(error)[:100]}).") \
            from error
    if model.ir_version < 1 or not model.HasField("graph"):
        raise WeightsFileError(f"{path.name} is not an ONNX model (no IR version or no graph).")
    return model


class OnnxFile:
    """An ONNX model's weights (``stored``, with their ``roles``), their values read on demand.

    Raises WeightsFileError when the file is over MAX_IN_MEMORY_BYTES (it is parsed whole), not an ONNX model,
    over the counts ``onnx_scan`` allows, or keeps weights in other files that the budget does not allow or
    that lie outside its folder.
    """

    name_hints = False  # the nodes say how each tensor is used

    def __init__(self, path: Path, size: int, budget: WeightsBudget):
        if size > MAX_IN_MEMORY_BYTES:
            raise WeightsFileError(f"{path.name} is {size / 2**30:,.1f} GiB; an ONNX model is read whole, up to "
                                   f"{MAX_IN_MEMORY_BYTES // 2**30} GiB (keep its weights as external data beside it).")
        self.path, self.size = path, None  # inline values are in the file, external ones checked by their length
        model = _parse(path, path.read_bytes(), budget)
        self.metadata = {entry.key: entry.value for entry in model.metadata_props}
        graphs = list(_graphs(model.graph))
        self.roles = _roles([graph for graph, _ in graphs])
        self._tensors: dict[str, onnx.TensorProto] = {}
        self._external: dict[str, tuple[Path, int]] = {}  # name -> (file, offset)
        self.stored: list[StoredTensor] = []
        self.unread: list[tuple[str, str]] = []  # (name, why): tensors listed but never read
        self._seen: set[str] = set()
        for graph, where in graphs:
            for name, tensor, what in _value_tensors(graph, where):
                self._add(name, tensor, what, budget)

    def _add(self, name: str, tensor: onnx.TensorProto | None, what: str, budget: WeightsBudget) -> None:
        if name in self._seen:
            self.unread.append((name, f"{what}: a second tensor of this name (the first is read)"))
            return
        self._seen.add(name)
        if tensor is None:
            self.unread.append((name, f"{what}: sparse tensors are not read (save it dense)"))
            return
        external = None
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            external = self._locate(name, tensor, budget)
        self._tensors[name] = tensor
        self.stored.append(_stored(name, tensor, external))
        if what != "an initializer":
            role = self.roles.get(name, TensorRole())
            self.roles[name] = replace(role, where=f"{role.where}; {what}" if role.where else what)

    def _locate(self, name: str, tensor: onnx.TensorProto, budget: WeightsBudget) -> int:
        """Where an external tensor's values lie (recorded), and how many bytes it may read there."""
        if not budget.external_files:
            raise WeightsFileError(f"{self.path.name} keeps tensor {name[:80]!r} in another file (ONNX external "
                                   "data), which is not read here (an upload is one file). Save the model with its "
                                   "weights inside (onnx.save(model, path, save_as_external_data=False)), or open it "
                                   "from its folder on the command line.")
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = model_file(self.path.parent, entries.get("location", ""), f"{self.path.name}'s tensor {name[:80]!r}")
        try:
            offset = int(entries.get("offset", "0"))
            size = location.stat().st_size
            length = int(entries["length"]) if "length" in entries else size - offset
        except ValueError as error:
            raise WeightsFileError(f"{self.path.name}'s tensor {name[:80]!r} has an external data offset or length "
                                   "that is no whole number.") from error
        if offset < 0 or length < 0 or offset + length > size:
            raise WeightsFileError(f"{self.path.name}'s tensor {name[:80]!r} points outside {location.name}.")
        self._external[name] = (location, offset)
        return length

    def identity(self, name: str) -> None:
        return None  # one tensor per name in ONNX

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The values of ``name`` (already checked against the budget); floating types as float32."""
        tensor = self._tensors[name]
        if name in self._external:
            if tensor.data_type not in DTYPES:
                raise WeightsFileError(f"{self.path.name}: tensor {name!r} is of a type torch cannot read.")
            location, offset = self._external[name]
            values = read_rows(location, offset, getattr(torch, DTYPES[tensor.data_type][0]), tuple(tensor.dims))
        else:
            try:
                array = numpy_helper.to_array(tensor)
            except (ValueError, TypeError) as error:  # a size that does not match the shape
                raise WeightsFileError(f"{self.path.name}: tensor {name!r} cannot be read ({error}).") from error
            if array.dtype.kind == "f" or array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 has kind "V"
                array = array.astype(np.float32)
            values = torch.from_numpy(np.ascontiguousarray(array))
        values = values.float() if values.is_floating_point() else values
        return values[rows[0]:rows[1]] if rows is not None else values

    def tensors(self) -> dict[str, torch.Tensor]:
        return {tensor.name: self.read(tensor.name) for tensor in self.stored}
