"""The layers of a backbone that have neurons, and which of them can be pruned."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .pruning import PruningGraph


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # "Linear", "Conv2d" or "Conv2d (depthwise)"
    neurons: int  # output units or output filters
    vector_length: int  # length of each neuron's incoming weight vector
    params: int
    prunable: bool
    note: str  # why not prunable, or what it is coupled with

    def as_row(self) -> dict:
        return asdict(self)


def list_layers(model: nn.Module, graph: PruningGraph) -> list[LayerInfo]:
    """Every Linear/Conv2d layer in definition order, with its pruning status."""
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
        kind = "Linear" if isinstance(module, nn.Linear) else ("Conv2d (depthwise)" if depthwise else "Conv2d")
        params = sum(p.numel() for p in module.parameters())
        group = graph.groups[graph.group_of[name]] if name in graph.group_of else None
        if name == graph.spec.classifier:
            prunable, note = False, "final classifier: replaced for fine-tuning"
        elif group is None:
            prunable, note = False, "channels tied to the network's input or output"
        elif depthwise:
            prunable, note = False, f"follows its producer {group.root}"
        else:
            prunable = True
            partners = [other for other in group.layers if other != name]
            note = f"coupled with {len(partners)} layer(s) by a residual add: {', '.join(partners[:3])}" if partners else ""
        rows.append(LayerInfo(name, kind, module.weight.shape[0], module.weight[0].numel(), params, prunable, note))
    return rows
