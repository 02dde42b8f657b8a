"""The layers of a backbone that have neurons, and their weight vectors.

A neuron is a Linear output unit or a Conv2d output filter; its weight vector is the Linear
row, or the filter flattened to in_channels x kh x kw. A depthwise convolution (one filter
per input channel) has no neurons of its own: its channels follow the layer that feeds it.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError, NonFiniteWeightsError

__all__ = ["has_neurons", "is_depthwise", "weight_vectors", "finite_rows"]


def has_neurons(module: nn.Module) -> bool:
    """Whether ``module`` is a Linear or a Conv2d (depthwise ones included)."""
    return isinstance(module, (nn.Linear, nn.Conv2d))


def is_depthwise(module: nn.Module) -> bool:
    """A grouped Conv2d with one group per input channel (its outputs follow its inputs)."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def weight_vectors(module: nn.Module, layer_name: str = "layer", rows: tuple[int, int] | None = None) -> torch.Tensor:
    """One row per neuron (n x d): a Linear's weight rows, or each Conv2d filter flattened (detached,
    on the module's device, in its dtype); ``rows``: only neurons ``start:stop`` (a view, and only they are
    checked).

    Raises
    ------
    ConfigError : for a module that is neither Linear nor Conv2d.
    NonFiniteWeightsError : when any weight is NaN or Inf, naming ``layer_name`` and the first neurons.

    Example: a ``Conv2d(3, 32, 3)`` gives a 32 x 27 matrix.
    """
    if not has_neurons(module):
        raise ConfigError(f"{layer_name} is a {type(module).__name__}; only Linear and Conv2d layers have neurons.")
    vectors = module.weight.detach().flatten(1)
    first = 0 if rows is None else rows[0]
    return finite_rows(vectors if rows is None else vectors[rows[0]:rows[1]], layer_name, first)


def finite_rows(vectors: torch.Tensor, layer_name: str = "layer", first: int = 0) -> torch.Tensor:
    """``vectors`` (one row per neuron, the first of them neuron ``first``) unchanged; NonFiniteWeightsError naming
    the layer and the first bad neurons when any value is NaN or Inf."""
    # A finite sum settles it in one pass with no copy; only a sum that is not (a NaN, an Inf, or an overflow of
    # large finite values) costs the element-wise check.
    if not torch.isfinite(vectors.sum()) and not torch.isfinite(vectors).all():
        bad = [first + row for row in (~torch.isfinite(vectors)).any(1).nonzero().flatten().tolist()]
        raise NonFiniteWeightsError(
            f"Layer {layer_name} has NaN or Inf weights in {len(bad)} neuron(s) (first: {bad[:5]}); "
            "similarities are undefined. Load a healthy checkpoint or re-initialise the layer."
        )
    return vectors
