"""A 1B-shaped sharded checkpoint on disk: listing its layers, and reading one MLP layer's values.

Writes a Llama-shaped model in the Hugging Face layout (``model.safetensors.index.json`` beside
``model-0000N-of-0000M.safetensors`` shards; by default 16 blocks, hidden 2,048, MLP 8,192, vocabulary 32,000,
bf16: about 2.4 GB, seeded random values), written tensor by tensor so that it never sits in memory whole, in
a temporary folder deleted at the end (``--keep`` keeps it). Then, each in a fresh process (its peak resident
memory reset just before, read back from /proc/self/status's VmHWM just after):

1. listing: ``open_weights_file(folder)`` (every shard's header, once) and ``FileSource.open(folder)`` (which
   also tells which registry backbone it fits);
2. one MLP layer (``model.layers.8.mlp.up_proj``, the middle block's: 8,192 x 2,048 bf16, 32 MiB on disk, 64 MiB as float32):
   ``FileSource.weight_vectors``, which reads that layer's bytes alone; beside it, what a reader of one shard
   does with the safetensors package (``safe_open(shard).get_tensor(name).float()``: the header parsed again);
3. a block of 1,024 of its neurons (``weight_vectors(layer, (0, 1024))``): only those rows' bytes.

The page cache is as the writing left it (warm): the figures are the reader's own cost, not the disk's.

    .venv/bin/python bench/bench_weights_scale.py [--blocks 16 --hidden 2048 --mlp 8192 --shards 4] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROBE = r'''
import json, sys, time
from pathlib import Path

def rss_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

folder, step, layer = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
from cprune_core.model_source import FileSource
from cprune_core.weights import open_weights_file
from safetensors import safe_open
source = FileSource.open(folder) if step != "listing" else None
index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
before = rss_mb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
started = time.perf_counter()
if step == "listing":
    weights = open_weights_file(folder)
    listed = time.perf_counter() - started
    source = FileSource.open(folder)
    result = {"open_weights_file_s": listed, "FileSource_s": time.perf_counter() - started - listed,
              "layers": len(weights.layers), "skipped": len(weights.skipped), "files": len(weights.files)}
elif step == "layer":
    vectors = source.weight_vectors(layer)
    result = {"seconds": time.perf_counter() - started, "shape": list(vectors.shape)}
elif step == "rows":
    vectors = source.weight_vectors(layer, (0, 1024))
    result = {"seconds": time.perf_counter() - started, "shape": list(vectors.shape)}
else:
    with safe_open(str(folder / index[layer + ".weight"]), framework="pt") as shard:
        vectors = shard.get_tensor(layer + ".weight").float()
    result = {"seconds": time.perf_counter() - started, "shape": list(vectors.shape)}
result["peak_above_start_mb"] = rss_mb("VmHWM") - before
print(json.dumps(result))
'''


def shapes(blocks: int, hidden: int, mlp: int, vocab: int) -> dict[str, tuple[int, ...]]:
    """The checkpoint's tensors in the order a Llama model defines them."""
    found = {"model.embed_tokens.weight": (vocab, hidden)}
    for block in range(blocks):
        prefix = f"model.layers.{block}"
        found.update({f"{prefix}.self_attn.{name}.weight": (hidden, hidden)
                      for name in ("q_proj", "k_proj", "v_proj", "o_proj")})
        found.update({f"{prefix}.mlp.gate_proj.weight": (mlp, hidden), f"{prefix}.mlp.up_proj.weight": (mlp, hidden),
                      f"{prefix}.mlp.down_proj.weight": (hidden, mlp),
                      f"{prefix}.input_layernorm.weight": (hidden,), f"{prefix}.post_attention_layernorm.weight": (hidden,)})
    found.update({"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)})
    return found


def write_shard(path: Path, tensors: dict[str, tuple[int, ...]], generator: torch.Generator) -> None:
    """A bf16 safetensors shard written as the format says: the header from the shapes, then each tensor's
    values, generated and written one at a time."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors.items():
        size = 2 * int(torch.tensor(shape).prod())
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(text)) + text)
        for shape in tensors.values():
            values = torch.randn(*shape, generator=generator).mul_(0.02).to(torch.bfloat16)
            file.write(values.view(torch.uint8).numpy().tobytes())


def write_checkpoint(folder: Path, blocks: int, hidden: int, mlp: int, vocab: int, shards: int) -> int:
    """The checkpoint in ``shards`` shards of about equal size; returns its bytes."""
    tensors = shapes(blocks, hidden, mlp, vocab)
    total = sum(2 * int(torch.tensor(shape).prod()) for shape in tensors.values())
    generator = torch.Generator().manual_seed(0)
    weight_map, part, filled = {}, {}, 0
    names = list(tensors)
    for name in names:
        part[name] = tensors[name]
        filled += 2 * int(torch.tensor(tensors[name]).prod())
        shard_number = len(set(weight_map.values())) + 1
        if filled >= total * shard_number / shards or name == names[-1]:
            file = f"model-{shard_number:05d}-of-{shards:05d}.safetensors"
            write_shard(folder / file, part, generator)
            weight_map.update({written: file for written in part})
            part = {}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return total


def probe(folder: Path, step: str, layer: str) -> dict:
    """One measurement in a fresh process (as one thread: OMP_NUM_THREADS=1)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder), step, layer], capture_output=True, text=True,
                          env=environment, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint's shape: --blocks, --hidden, --mlp, --vocab (a 1B-shaped Llama by default)."""
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--mlp", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=32000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(parser)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the checkpoint (its folder is printed).")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cprune-1b-"))
    try:
        started = time.perf_counter()
        total = write_checkpoint(folder, args.blocks, args.hidden, args.mlp, args.vocab, args.shards)
        print(f"wrote {total / 1e9:.2f} GB in {args.shards} shards ({time.perf_counter() - started:.0f} s): {folder}")
        print(f"load average before: {os.getloadavg()}")
        layer = f"model.layers.{args.blocks // 2}.mlp.up_proj"
        for step in ("listing", "layer", "safe_open", "rows"):
            for _ in range(args.repeats):
                print(step, json.dumps(probe(folder, step, layer)))
        print(f"load average after: {os.getloadavg()}")
    finally:
        if not args.keep:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
