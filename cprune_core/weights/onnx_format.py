"""``.onnx`` models: the initializers of the top-level graph are the weights.

The file is parsed as an ONNX ``ModelProto`` from its bytes (never ``onnx.load(path)``), and
an initializer whose values live in another file (``data_location: EXTERNAL``) is refused: its
location is a path written by whoever made the file, and following it would read any file the
server can. ``MatMul`` weights, and ``Gemm`` weights without ``transB``, are stored inputs x
outputs; they are turned round so that rows are neurons, as for a Linear layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import WeightsFileError
from .budget import StoredTensor

__all__ = ["OnnxModel", "read_onnx"]

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


def _stored(initializer: onnx.TensorProto) -> StoredTensor:
    """An initializer as a StoredTensor (types torch lacks keep ONNX's name and are never read)."""
    shape = tuple(int(size) for size in initializer.dims)
    if initializer.data_type not in DTYPES:
        name = onnx.TensorProto.DataType.Name(initializer.data_type).lower() \
            if initializer.data_type in onnx.TensorProto.DataType.values() else f"type {initializer.data_type}"
        return StoredTensor(initializer.name, shape, name, None, None)
    dtype, itemsize, field, per_element = DTYPES[initializer.data_type]
    if initializer.HasField("raw_data"):
        stored = len(initializer.raw_data)
    else:
        stored = len(getattr(initializer, field)) // per_element * itemsize
    return StoredTensor(initializer.name, shape, dtype, itemsize, stored)


def _turned_round(graph: onnx.GraphProto, names: set[str]) -> set[str]:
    """Initializers used as the (inputs x outputs) weight of a MatMul, or of a Gemm without transB."""
    found = set()
    for node in graph.node:
        if len(node.input) < 2 or node.input[1] not in names:
            continue
        trans_b = next((attribute.i for attribute in node.attribute if attribute.name == "transB"), 0)
        if node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b):
            found.add(node.input[1])
    return found


class OnnxModel:
    """A parsed ONNX model's initializers: their descriptions, which are stored turned round, their values."""

    def __init__(self, path: Path, model: onnx.ModelProto):
        self.path = path
        self.initializers = {tensor.name: tensor for tensor in model.graph.initializer}
        self.stored = [_stored(tensor) for tensor in self.initializers.values()]
        self.transposed = _turned_round(model.graph, set(self.initializers))

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The values of ``names`` (already checked against the budget); floating types as float32."""
        values = {}
        for name in names:
            try:
                array = numpy_helper.to_array(self.initializers[name])
            except (ValueError, TypeError) as error:  # a size that does not match the shape
                raise WeightsFileError(f"{self.path.name}: initializer {name!r} cannot be read ({error}).") from error
            if array.dtype.kind == "f" or array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 has kind "V"
                array = array.astype(np.float32)
            values[name] = torch.from_numpy(np.ascontiguousarray(array))
        return values


def read_onnx(path: Path) -> OnnxModel:
    """Parse ``path`` as an ONNX model. WeightsFileError when it is not one, or keeps weights in other files."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as error:
        raise WeightsFileError(f"{path.name} is not an ONNX model (it cannot be parsed: {str(error)[:100]}).") \
            from error
    if model.ir_version < 1 or not model.HasField("graph"):
        raise WeightsFileError(f"{path.name} is not an ONNX model (no IR version or no graph).")
    external = [tensor.name for tensor in model.graph.initializer
                if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data)]
    if external:
        raise WeightsFileError(f"{path.name} keeps {len(external)} initializer(s) in other files (first: "
                               f"{external[0][:80]!r}); a model's external data paths are not followed. Save the model "
                               "with its weights inside (onnx.save(model, path, save_as_external_data=False)).")
    return OnnxModel(path, model)
