"""How a stored tensor becomes a layer of neurons, or why it is none.

Rows are neurons for a Linear weight (out x in) and a Conv weight (out x in x kernel...). Some tensors
are stored otherwise, and say so only through their use: an ONNX ``MatMul`` (or ``Gemm`` without
``transB``) weight is inputs x outputs; a ``ConvTranspose`` weight is in_channels x out_channels/groups x
kernel; an ONNX ``LSTM``/``GRU``/``RNN`` weight is directions x gates·hidden x inputs. In a state dict a
ConvTranspose weight is recognised by its name alone (``conv_transpose``, ``convtranspose``, ``deconv``,
``upconv``, any case), with one group. A tensor is no layer when it has fewer than two neurons or vectors
of one element (a bias, a scale, a norm's weight: at most one dimension over 1), is not floating point, is
empty, or has a rank beyond 5.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .budget import StoredTensor

__all__ = ["TensorRole", "ROWS", "name_role", "neurons_first_shape", "arrange", "no_layer_reason", "kind_of"]

_TRANSPOSED_NAME = re.compile(r"conv_?transpose|deconv|upconv", re.IGNORECASE)
RANK_KINDS = {2: "Linear", 3: "Conv1d", 4: "Conv2d", 5: "Conv3d"}


@dataclass(frozen=True)
class TensorRole:
    """How a tensor is stored as a layer: ``arrangement`` "rows" (neurons first), "columns" (inputs x
    outputs), "transposed_conv" (in x out/groups x kernel, with ``groups``) or "gates" (directions x gates
    x inputs); ``skip``: why it is no layer, from its use (the bias of a node); ``where``: for people."""

    arrangement: str = "rows"
    groups: int = 1
    skip: str = ""
    where: str = ""


ROWS = TensorRole()


def name_role(name: str, shape: tuple[int, ...]) -> TensorRole:
    """A state dict tensor's role from its name: a ConvTranspose weight by the words above, else rows."""
    if len(shape) in (3, 4, 5) and _TRANSPOSED_NAME.search(name):
        return TensorRole("transposed_conv", where="a ConvTranspose weight, by its name")
    return ROWS


def neurons_first_shape(shape: tuple[int, ...], role: TensorRole) -> tuple[int, ...]:
    if role.arrangement == "columns" and len(shape) == 2:
        return shape[::-1]
    if role.arrangement == "transposed_conv":
        return (shape[1] * role.groups, shape[0] // role.groups, *shape[2:])
    if role.arrangement == "gates":
        return (shape[0] * shape[1], *shape[2:])
    return shape


def arrange(values: torch.Tensor, role: TensorRole) -> torch.Tensor:
    """``values`` as stored, turned neurons first (a new view or copy; ``values`` when already so)."""
    if role.arrangement == "columns" and values.ndim == 2:
        return values.T
    if role.arrangement == "transposed_conv":
        inputs, outputs, *kernel = values.shape
        grouped = values.reshape(role.groups, inputs // role.groups, outputs, *kernel)
        return grouped.transpose(1, 2).reshape(role.groups * outputs, inputs // role.groups, *kernel)
    if role.arrangement == "gates":
        return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
    return values


def no_layer_reason(tensor: StoredTensor, role: TensorRole) -> str:
    """Why ``tensor`` is no layer, in words ("" when it is one)."""
    shape = list(tensor.shape)
    if role.skip:
        return role.skip
    if not tensor.is_float:
        return (f"{tensor.dtype}: not a floating-point weight (integer, boolean, complex and 8-bit float tensors are "
                "not read as layers)")
    if tensor.numel == 0:
        return f"empty (shape {shape})"
    if len(shape) > 5:
        return f"rank {len(shape)}: only ranks 2 (Linear), 3 (Conv1d), 4 (Conv2d) and 5 (Conv3d) are layers"
    if sum(size > 1 for size in shape) <= 1:
        return (f"shape {shape}: one value per channel (a bias, a scale or a norm's weight, or a layer of one "
                "input), no neurons with weight vectors to compare")
    if role.arrangement == "transposed_conv" and shape[0] % role.groups:
        return f"a ConvTranspose weight whose {shape[0]} input channels do not divide into {role.groups} groups"
    return ""


def kind_of(rank: int, role: TensorRole) -> str:
    """"Linear-like (rank 2)", "Conv2d-like (rank 4)", "ConvTranspose2d-like (rank 4)", "recurrent (rank 3)"."""
    if role.arrangement == "transposed_conv":
        return f"ConvTranspose{rank - 2}d-like (rank {rank})"
    if role.arrangement == "gates":
        return f"recurrent (rank {rank})"
    return f"{RANK_KINDS[rank]}-like (rank {rank})"
