"""The inputs of the rest of the network at each cut, for one set of images, from one pass of each module.

``ForwardAblator`` runs the rest of the network from the block that holds a layer; for every layer of a
network those blocks' inputs are all needed. ``BlockInputs`` walks the network's chain once: the inputs
at a later cut are the earlier cut's inputs carried through the modules in between, so each module runs
once over the images, not once per layer (cutting a fresh prefix for every layer would run the stem once
per layer). Only the current cut's inputs are held.
"""
from __future__ import annotations

import threading
from dataclasses import replace

import torch
from torch import nn

from ..cut import cut_model
from ..data import ImageListDataset, build_transform, make_loader
from ..device import Precision
from ..features import FEATURE_BATCH_SIZE, Features, extract_features
from ..progress import Steps, check_stop
from ..registry import BackboneSpec

__all__ = ["BlockInputs", "chain_steps"]


def chain_steps(model: nn.Module, spec: BackboneSpec, cut: str) -> list[nn.Module]:
    """The modules that compute the inputs at ``cut`` from the images, in order, with every
    ``nn.Sequential`` opened up: the steps to a later cut extend the steps to an earlier one."""
    def opened(module: nn.Module) -> list[nn.Module]:
        if isinstance(module, nn.Sequential):
            return [step for child in module for step in opened(child)]
        return [module]

    return opened(cut_model(model, replace(spec, suffix_start=cut))[0])


def _same_step(a: nn.Module, b: nn.Module) -> bool:
    # cut_model inserts a fresh nn.Flatten where the backbone's forward() flattens.
    return a is b or (type(a) is nn.Flatten and type(b) is nn.Flatten)


class BlockInputs:
    """The images of ``dataset`` carried forward cut by cut through ``model`` (eval mode, no gradients).

    ``at(cut)`` returns (inputs at ``cut``, labels) for cuts in network order; ``pooled()`` the
    classifier's inputs (what ``PooledAblator`` reads). Asking for a cut before the current one
    raises ValueError (a bug: the atlas asks in network order). ``stop`` is checked between batches.
    """

    def __init__(self, model: nn.Module, spec: BackboneSpec, dataset: ImageListDataset, image_size: int,
                 device: torch.device, *, stop: threading.Event | None = None):
        self.model, self.spec, self.device = model.eval(), spec, device
        self.dataset, self.image_size = dataset, image_size
        self.stop = stop
        self.steps: list[nn.Module] | None = None  # the modules already applied
        self.features: Features | None = None

    def _images(self, steps: list[nn.Module]) -> Features:
        transform = build_transform(self.image_size, self.spec.mean, self.spec.std, train=False)
        loader = make_loader(self.dataset, transform, FEATURE_BATCH_SIZE, self.device)
        batches = Steps(extract_features(nn.Sequential(*steps), loader, Precision(self.device), self.stop, "val"))
        for _ in batches:
            pass
        return batches.result

    def _carry(self, steps: list[nn.Module]) -> Features:
        values, labels = self.features
        middle = nn.Sequential(*steps).eval()
        carried = []
        with torch.no_grad():
            for start in range(0, len(values), FEATURE_BATCH_SIZE):
                check_stop(self.stop, "Stopped while computing the inputs of the network's blocks.")
                carried.append(middle(values[start:start + FEATURE_BATCH_SIZE].to(self.device)).float().cpu())
        return torch.cat(carried), labels

    def at(self, cut: str) -> Features:
        steps = chain_steps(self.model, self.spec, cut)
        if self.steps is None:
            self.features = self._images(steps)
        else:
            done = len(self.steps)
            if len(steps) < done or not all(map(_same_step, self.steps, steps[:done])):
                raise ValueError(f"The inputs at {cut} lie before the current cut: ask in network order.")
            if len(steps) > done:
                self.features = self._carry(steps[done:])
        self.steps = steps
        return self.features

    def pooled(self) -> Features:
        """The classifier's inputs for these images (after the last cut any layer can have)."""
        return self.at(self.spec.classifier)
