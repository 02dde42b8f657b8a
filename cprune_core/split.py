"""Cut a backbone into a frozen prefix and a trainable suffix.

Each registry entry names where its trainable suffix starts (``suffix_start``, a dotted
module path) and where torchvision's forward() flattens (``flatten_before``). The model is
read as a chain of its modules in definition order, descending into containers only along
the path to the cut, so ``prefix`` then ``suffix`` compute exactly ``model(x)``. The features
the prefix produces can then be cached once per dataset.
"""
from __future__ import annotations

from torch import nn

from .errors import ConfigError
from .pruning import PruningGraph, select_groups
from .registry import BackboneSpec, get_submodule

__all__ = ["split_model", "layers_to_prune"]


def _chain(module: nn.Module, path: list[str], flatten_before: str, prefix: str = "") -> tuple[list, list]:
    before, after, found = [], [], False
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if full == flatten_before:
            (after if found else before).append(nn.Flatten(1))
        if not found and path and name == path[0]:
            found = True
            if len(path) == 1:
                after.append(child)
            else:
                inner_before, inner_after = _chain(child, path[1:], flatten_before, f"{full}.")
                before.extend(inner_before)
                after.extend(inner_after)
            continue
        (after if found else before).append(child)
    if path and not found:
        raise KeyError(f"No module {prefix}{path[0]!r} on the way to the cut point.")
    return before, after


def split_model(model: nn.Module, spec: BackboneSpec) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, suffix) sharing the model's modules: ``suffix(prefix(x)) == model(x)``."""
    before, after = _chain(model, spec.suffix_start.split("."), spec.flatten_before)
    return nn.Sequential(*before), nn.Sequential(*after)


def layers_to_prune(model: nn.Module, spec: BackboneSpec, layers: list[str] | None, frozen_prefix: bool) -> list[str]:
    """The layers a run prunes: ``layers`` (None: the registry's head layer; ["all"]: every prunable
    layer in the trained scope), checked to leave a frozen prefix untouched. ConfigError otherwise."""
    layers = layers or [spec.head_layer]
    graph = PruningGraph(model, spec)
    prefix_modules = {id(m) for m in split_model(model, spec)[0].modules()} if frozen_prefix else set()

    def touches_prefix(group) -> bool:
        return any(id(get_submodule(model, effect.module)) in prefix_modules for effect in group.effects)

    if layers == ["all"]:
        groups = [g for g in graph.groups if not touches_prefix(g)]
        if not groups:
            raise ConfigError(f"{spec.name} has no prunable layer in its trainable suffix; use train_scope='all'.")
        return [g.root for g in groups]
    for group in select_groups(graph, layers):
        if touches_prefix(group):
            raise ConfigError(
                f"Pruning {group.root} changes the frozen prefix (it ends before {spec.suffix_start}); "
                "use train_scope='all' to prune it, or choose a layer in the suffix.")
    return layers
