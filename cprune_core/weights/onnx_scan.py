"""An ONNX file's protobuf counted field by field before it is parsed.

Parsing builds an object for every message: 20 MB of empty nodes (two bytes each) cost 1.3-1.7 GB. The
walk here reads only tags and lengths, guided by ONNX's own message descriptors, and stops at the first
limit passed: messages (nodes, attributes, tensors, value infos, dimensions...), fields of any kind,
tensors, and elements of packed integer lists (eight bytes each once parsed, from one byte on disk). A
model within them parses into at most a few hundred megabytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from google.protobuf.descriptor import FieldDescriptor

from ..errors import WeightsFileError

__all__ = ["ONNX_LIMITS", "OnnxLimits", "scan_onnx"]

_VARINTS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM}


@dataclass(frozen=True)
class OnnxLimits:
    messages: int = 500_000
    fields: int = 2_000_000
    packed_integers: int = 16 * 2**20
    depth: int = 64


ONNX_LIMITS = OnnxLimits()


@dataclass
class _Counts:
    limits: OnnxLimits
    max_tensors: int
    found: dict = field(default_factory=lambda: {"messages": 0, "fields": 0, "packed_integers": 0, "tensors": 0})

    def add(self, kind: str, amount: int, what: str) -> None:
        self.found[kind] += amount
        limit = self.max_tensors if kind == "tensors" else getattr(self.limits, kind)
        if self.found[kind] > limit:
            raise WeightsFileError(f"{what} holds more than {limit:,} {kind.replace('_', ' ')}, the limit for an ONNX "
                                   "model (checked before it is parsed).")


_SCHEMAS: dict[str, dict] = {}


def _schema(descriptor) -> dict[int, tuple[object, bool]]:
    """field number -> (its message descriptor or None, whether it is a varint type)."""
    if descriptor.full_name not in _SCHEMAS:
        _SCHEMAS[descriptor.full_name] = {
            item.number: (item.message_type if item.type == FieldDescriptor.TYPE_MESSAGE else None,
                          item.type in _VARINTS) for item in descriptor.fields}
    return _SCHEMAS[descriptor.full_name]


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("a varint runs past its message")


def _walk(data: bytes, pos: int, end: int, descriptor, depth: int, counts: _Counts, what: str) -> None:
    if depth > counts.limits.depth:
        raise WeightsFileError(f"{what} nests messages more than {counts.limits.depth} deep.")
    schema = _schema(descriptor)
    while pos < end:
        tag, pos = _varint(data, pos, end)
        wire = tag & 7
        counts.add("fields", 1, what)
        if wire == 0:
            _, pos = _varint(data, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise ValueError("a field runs past its message")
            child, varints = schema.get(tag >> 3, (None, False))
            if child is not None:
                counts.add("messages", 1, what)
                if child.full_name == "onnx.TensorProto":
                    counts.add("tensors", 1, what)
                _walk(data, pos, pos + length, child, depth + 1, counts, what)
            elif varints:
                counts.add("packed_integers", length, what)
            pos += length
        else:
            raise ValueError(f"wire type {wire}, which ONNX does not use")
    if pos != end:
        raise ValueError("a field runs past its message")


def scan_onnx(data: bytes, what: str, max_tensors: int, limits: OnnxLimits = ONNX_LIMITS) -> None:
    """Walk ``data`` as an ONNX ModelProto without building it. WeightsFileError naming ``what`` when it is not
    a protobuf, or holds more than ``limits`` allow or more than ``max_tensors`` tensors."""
    try:
        _walk(data, 0, len(data), onnx.ModelProto.DESCRIPTOR, 0, _Counts(limits, max_tensors), what)
    except ValueError as error:
        raise WeightsFileError(f"{what} is not an ONNX model (it cannot be parsed: {error}).") from error
