"""Save, reload and export fine-tuned (pruned) models.

A model directory holds ``model.pt`` (the state dict, torch.save) and ``model.json`` (what is
needed to rebuild the architecture and use it: backbone, kept neuron indices per pruned layer,
classes, image size, normalisation, plus the run's config and test accuracy). Rebuilding is
load_backbone(random) -> apply_kept -> replace_classifier -> load_state_dict, so no pickled
code is ever loaded. Every file is written to a temporary name and renamed into place;
``model.json`` is written last, so a directory with it is complete.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .pruning import apply_kept
from .registry import BackboneSpec, get_spec, load_backbone, read_state_dict, replace_classifier
from .schema import RunResult

__all__ = ["SavedModel", "save_model", "load_model", "export_onnx", "export_torchscript", "WEIGHTS_FILE", "SPEC_FILE"]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"


@dataclass
class SavedModel:
    model: nn.Module  # eval mode, on CPU
    spec: BackboneSpec
    info: dict  # the contents of model.json

    @property
    def classes(self) -> list[str]:
        return self.info["classes"]

    @property
    def image_size(self) -> int:
        return self.info["image_size"]


def _atomic_write(path: Path, write) -> None:
    """Call write(temporary_path), then rename it to ``path`` (same directory, so atomic)."""
    # A name unique to this process and thread; created by write() with the usual permissions.
    temporary = str(path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"))
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(result: RunResult, directory: str | Path) -> Path:
    """Write a run's model to ``directory`` (created if needed); returns the directory."""
    if result.model is None:
        raise CheckpointError(f"The run has no model to save (status {result.status}: {result.summary.message}).")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = result.config
    spec = result.spec
    info = {
        "format_version": FORMAT_VERSION,
        "backbone": config.backbone,
        "weights": config.weights,
        "mode": config.mode,
        "criterion": config.criterion if config.mode == "pruned" else None,
        "keep": config.keep if config.mode == "pruned" else None,
        "tau": config.tau if config.mode == "pruned" else None,
        "layers": sorted(result.kept),
        "kept": result.kept,
        "classes": list(result.classes),
        "num_classes": len(result.classes),
        "image_size": config.image_size or spec.input_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "test_acc": result.summary.test_acc,
        "status": result.status,
        "config": config.to_dict(),
    }
    state = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    _atomic_write(directory / WEIGHTS_FILE, lambda path: torch.save(state, path))
    _atomic_write(directory / SPEC_FILE, lambda path: Path(path).write_text(json.dumps(info, indent=2)))
    return directory


def load_model(directory: str | Path) -> SavedModel:
    """Rebuild a saved model (eval mode, CPU). Raises CheckpointError when the directory is not one."""
    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise CheckpointError(f"{directory} is not a saved model directory (no {SPEC_FILE}). "
                              "Save one with `python -m cprune_core finetune ... --save DIR`.")
    try:
        info = json.loads(spec_path.read_text())
        spec = get_spec(info["backbone"])
        kept = {layer: [int(i) for i in indices] for layer, indices in info["kept"].items()}
        num_classes = int(info["num_classes"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{spec_path} is damaged or from another version: {error}") from error
    model = load_backbone(spec.name, "random").model
    apply_kept(model, spec, kept)
    replace_classifier(model, spec, num_classes)
    state = read_state_dict(directory / WEIGHTS_FILE)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{directory / WEIGHTS_FILE} does not match {SPEC_FILE}: {error}") from error
    return SavedModel(model.eval(), spec, info)


def export_torchscript(model: nn.Module, path: str | Path, image_size: int) -> Path:
    """Trace the model (eval mode, CPU) to TorchScript at ``path``."""
    path = Path(path)
    model = model.eval().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still the portable format
        traced = torch.jit.trace(model, torch.zeros(1, 3, image_size, image_size))
        _atomic_write(path, lambda temporary: torch.jit.save(traced, temporary))
    return path


def export_onnx(model: nn.Module, path: str | Path, image_size: int) -> Path:
    """Export the model (eval mode, CPU) to ONNX at ``path`` with a dynamic batch dimension."""
    path = Path(path)
    model = model.eval().cpu()
    example = torch.zeros(1, 3, image_size, image_size)

    def write(temporary: str) -> None:
        # The TorchScript-based exporter is quick and needs nothing beyond onnx itself.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(model, (example,), temporary, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)

    _atomic_write(path, write)
    return path
