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


def clustered(neurons: int, inputs: int, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """A layer whose neurons gather around ``clusters`` directions (as trained layers' often do): each row a
    cluster's centre plus noise, so its graph has communities to see."""
    centres = torch.randn(clusters, inputs, generator=generator)
    members = torch.arange(neurons) % clusters
    return (centres[members] + 0.9 * torch.randn(neurons, inputs, generator=generator)) * 0.05


def transformer_stack(blocks: int = 2, width: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """A transformer-like state dict: a patch embedding (a Conv2d of 32 RGB 4 x 4 filters), then per block a
    query-key-value projection (3 x width neurons), an output projection, an MLP of 4 x width and back, with
    biases and layer norms (rank 1: no layers), seeded."""
    generator = torch.Generator().manual_seed(seed)
    state = {"patch_embed.proj.weight": clustered(32, 3 * 4 * 4, 4, generator).view(32, 3, 4, 4)}
    for block in range(blocks):
        for name, (rows, cols) in {"attn.qkv": (3 * width, width), "attn.proj": (width, width),
                                   "mlp.fc": (4 * width, width), "mlp.proj": (width, 4 * width)}.items():
            state[f"h.{block}.{name}.weight"] = clustered(rows, cols, 8, generator)
            state[f"h.{block}.{name}.bias"] = torch.zeros(rows)
        state[f"h.{block}.ln.weight"] = torch.ones(width)
    return state
