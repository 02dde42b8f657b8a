"""Weights files made by the tests (no download): safetensors of any state dict, a torchvision model's."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path))
    return path


def resnet18_safetensors(folder: Path, classes: int) -> tuple[Path, torch.nn.Module]:
    """A random-init torchvision ResNet-18 with ``classes`` outputs, seeded, saved as safetensors; and the model."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=classes)
    return save_safetensors(model.state_dict(), folder / "resnet18.safetensors"), model
