"""Where a layer's weights come from: a registry backbone, or any weights file.

Everything that looks at layers (the explorer, How it works, the layer-wise view, ``cprune graph``)
needs three things of a model, and both sources give them the same way (``ModelSource``):

- ``layers``: one ``LayerInfo`` row per layer with neurons (name, kind, neurons, vector length, ...);
  ``info(layer)`` the row of one (ConfigError naming a few layers for a name the model lacks);
- ``weight(layer)``: its weights as float32, neurons first ((out, in) or (out, in, kh, kw): a
  neuron's filter image is ``weight(layer)[neuron]``);
- ``weight_vectors(layer, rows=None)``: one row per neuron, what ``graph.cosine_similarity`` and the criteria
  take; ``rows=(start, stop)`` for a block of neurons (from a file, only their bytes are read).

``graph_layers`` are the layers a layer-wise table covers (a backbone's prunable layers, every
layer of a file), and ``fits`` the backbones whose checkpoint the weights are. Pruning and
fine-tuning need a backbone: a file whose names and shapes fit one is loaded as its checkpoint
(``registry.load_backbone(name, "checkpoint", path)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from .errors import ConfigError
from .layers import weight_vectors
from .pruning import LayerInfo, PruningGraph, list_layers
from .registry import Backbone, backbones_fitting, get_submodule, load_backbone
from .weights import DEFAULT_BUDGET, WeightsBudget, WeightsFile, open_weights_file, printable

__all__ = ["ModelSource", "BackboneSource", "FileSource"]


class ModelSource(Protocol):
    title: str  # for people: "ResNet-18 (pretrained)", "model.safetensors (a safetensors file)"
    layers: list[LayerInfo]
    graph_layers: list[str]
    fits: list[str]

    def info(self, layer: str) -> LayerInfo: ...

    def weight(self, layer: str) -> torch.Tensor: ...

    def weight_vectors(self, layer: str, rows: tuple[int, int] | None = None) -> torch.Tensor: ...


class BackboneSource:
    """A registry backbone's layers (``BackboneSource.load(name, weights)``, or around a loaded Backbone)."""

    def __init__(self, backbone: Backbone, graph: PruningGraph | None = None):
        self.backbone = backbone
        self.graph = graph or PruningGraph(backbone.model, backbone.spec)
        self.title = f"{backbone.spec.title} ({backbone.weights_status})"
        self.layers = list_layers(backbone.model, self.graph)
        self.graph_layers = [info.name for info in self.layers if info.prunable]
        self.fits = [backbone.spec.name]

    @classmethod
    def load(cls, name: str, weights: str = "pretrained", checkpoint: str | Path | None = None) -> BackboneSource:
        return cls(load_backbone(name, weights, checkpoint))

    def info(self, layer: str) -> LayerInfo:
        found = next((info for info in self.layers if info.name == layer), None)
        if found is None:
            some = ", ".join(info.name for info in self.layers[:5])
            raise ConfigError(f"{self.backbone.spec.title} has no layer {layer!r} with neurons; its layers include "
                              f"{some}.")
        return found

    def weight_vectors(self, layer: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """ConfigError for a layer the model lacks or that has no neurons; NonFiniteWeightsError for NaN or Inf.
        ``rows``: only neurons ``start:stop`` (the model is in memory: a slice)."""
        return weight_vectors(get_submodule(self.backbone.model, layer), layer, rows).float()

    def weight(self, layer: str) -> torch.Tensor:
        return self.weight_vectors(layer).view(get_submodule(self.backbone.model, layer).weight.shape)


class FileSource:
    """The layers of a model's weights (``FileSource.open(path)``: a file, a folder or a checkpoint's index):
    every float tensor of rank 2 to 5 with neurons to compare.

    None is prunable here; ``fits`` names the backbones the file is a checkpoint of; ``skipped`` lists every
    other tensor as (printable name, why).
    """

    def __init__(self, weights: WeightsFile):
        self.weights = weights
        self.title = f"{printable(weights.path.name)} ({weights.description})"
        self.layers = [LayerInfo(layer.name, layer.kind, layer.neurons, layer.vector_length,
                                 layer.neurons * layer.vector_length, False, layer.note)
                       for layer in weights.layers]
        self.graph_layers = [info.name for info in self.layers]
        self.skipped = weights.skipped
        self.fits = backbones_fitting(weights.shapes)

    @classmethod
    def open(cls, path: str | Path, budget: WeightsBudget = DEFAULT_BUDGET) -> FileSource:
        """WeightsFileError (one sentence) for a model that cannot be read: see weights.open_weights_file."""
        return cls(open_weights_file(path, budget))

    def info(self, layer: str) -> LayerInfo:
        """The row of ``layer`` (its name as listed, as the file writes it, or its tensor's name: see
        ``WeightsFile.layer``, whose errors it raises)."""
        name = self.weights.layer(layer).name
        return next(info for info in self.layers if info.name == name)

    def weight(self, layer: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """See ``WeightsFile.weight``: only the bytes of the rows asked for are read (a layer stored neurons
        first), each call from the file."""
        return self.weights.weight(layer, rows)

    def weight_vectors(self, layer: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        return self.weights.weight_vectors(layer, rows)
