"""Cut a backbone into a frozen prefix and a trainable suffix (``cut_model``).

Each registry entry names where its trainable suffix starts (``suffix_start``, a dotted
module path) and where torchvision's forward() flattens (``flatten_before``). The model is
read as a chain of its modules in definition order, descending into containers only along
the path to the cut, so ``prefix`` then ``suffix`` compute exactly ``model(x)``. The features
the prefix produces can then be cached once per dataset.
"""
from __future__ import annotations

from torch import nn

from .registry import BackboneSpec

__all__ = ["cut_model"]


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
        raise KeyError(f"No module '{prefix}{path[0]}' on the way to the cut point.")
    return before, after


def cut_model(model: nn.Module, spec: BackboneSpec) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, suffix) sharing the model's modules: ``suffix(prefix(x)) == model(x)``.

    The cut falls before ``spec.suffix_start`` (a dotted path: "head", "layer4", "blocks.15"); the
    containers on the way to it are opened, so every container above the cut must be a chain
    (``nn.Sequential``), and torchvision's flatten is put back where ``spec.flatten_before`` says.
    Both parts are ``nn.Sequential``s of the model's own modules: training the suffix trains the model.
    KeyError for a cut point the model does not have (a registry entry's mistake, not a user's).
    """
    before, after = _chain(model, spec.suffix_start.split("."), spec.flatten_before)
    return nn.Sequential(*before), nn.Sequential(*after)
