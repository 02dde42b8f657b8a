"""Weights files made by the tests (no download): safetensors of any state dict (by the package, or by hand:
aliases, forged headers), a torchvision model's, a Llama-shaped model in the Hugging Face checkpoint layout."""
from __future__ import annotations

import json
import struct
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


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def raw_safetensors(tensors: dict[str, torch.Tensor], path: Path, aliases: dict[str, str] | None = None,
                    metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file written by hand, as the format's specification says (what ``save_file`` refuses to
    write: ``aliases`` name -> the tensor whose bytes it shares, as tied weights)."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    data = bytearray()
    for name, tensor in tensors.items():
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    for name, target in (aliases or {}).items():
        header[name] = dict(header[target])
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(data))
    return path


def llama_like(blocks: int, hidden: int, mlp: int, vocab: int, dtype: torch.dtype, seed: int = 0
               ) -> dict[str, torch.Tensor]:
    """A Llama-shaped state dict (no download): embeddings, per block the attention projections, the gated MLP
    and two norms, a final norm; seeded."""
    generator = torch.Generator().manual_seed(seed)

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return (torch.randn(rows, cols, generator=generator) * 0.02).to(dtype)

    state = {"model.embed_tokens.weight": matrix(vocab, hidden)}
    for block in range(blocks):
        prefix = f"model.layers.{block}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[f"{prefix}.self_attn.{name}.weight"] = matrix(hidden, hidden)
        state[f"{prefix}.mlp.gate_proj.weight"] = matrix(mlp, hidden)
        state[f"{prefix}.mlp.up_proj.weight"] = matrix(mlp, hidden)
        state[f"{prefix}.mlp.down_proj.weight"] = matrix(hidden, mlp)
        state[f"{prefix}.input_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
        state[f"{prefix}.post_attention_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
    state["model.norm.weight"] = torch.ones(hidden, dtype=dtype)
    return state


def hugging_face_checkpoint(folder: Path, state: dict[str, torch.Tensor], shards: int,
                            tied: dict[str, str] | None = None) -> Path:
    """``state`` saved as Hugging Face saves a large model: ``model-0000N-of-0000M.safetensors`` shards (tensors
    dealt out in turn) and ``model.safetensors.index.json`` naming each tensor's shard; ``tied`` names -> the
    tensor whose bytes they share (in its shard). Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    weight_map = {}
    for shard in range(shards):
        file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        mine = {name: state[name] for name in names[shard::shards]}
        aliases = {alias: target for alias, target in (tied or {}).items() if target in mine}
        raw_safetensors(mine, folder / file, aliases, {"format": "pt"})
        weight_map.update({name: file for name in [*mine, *aliases]})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder
