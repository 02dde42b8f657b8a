"""Save, reload and export fine-tuned (pruned) models.

A model directory holds ``model.pt`` (the state dict, torch.save) and ``model.json`` (what is
needed to rebuild the architecture and use it: backbone, kept neuron indices per pruned layer,
classes, image size, normalisation, plus the run's config and test accuracy). Rebuilding is
load_backbone(random) -> apply_kept -> replace_classifier -> load_state_dict, so no pickled
code is ever loaded. Every file is written to a temporary name and renamed into place;
``model.json`` is written last, so a directory with it is complete.

Neither file can be changed alone without the change being caught, by field: ``model.pt`` also
holds model.json's contents as they were saved (``model_json``), and ``model.json`` holds the
SHA-256 of ``model.pt`` (``weights_sha256``). ``load_model`` checks the digest first (a changed or
swapped model.pt), then every field of model.json against the copy in model.pt (a reordered class
list, shifted kept indices, an edited accuracy), naming the first field that differs.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .paths import atomic_write, user_path
from .pruning import apply_kept
from .registry import (BACKBONES, MAX_CHECKPOINT_BYTES, BackboneSpec, ExpectedState, get_spec, load_backbone,
                       replace_classifier, state_dict_of)
from .schema import RunResult
from .weights import WeightsBudget, WeightsFile, read_weights_file

__all__ = ["SavedModel", "save_model", "load_model", "model_files", "zip_model", "export_onnx", "export_torchscript",
           "WEIGHTS_FILE", "SPEC_FILE", "ONNX_FILE", "TORCHSCRIPT_FILE", "MODEL_FILES"]

FORMAT_VERSION = 2  # 2: model.pt carries model.json's fields, model.json model.pt's digest
WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts"
MODEL_FILES = (SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, TORCHSCRIPT_FILE)  # everything a model directory may hold


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
    saved = {"state_dict": state, "model_json": json.dumps(info, sort_keys=True)}
    atomic_write(directory / WEIGHTS_FILE, lambda path: torch.save(saved, path))
    info["weights_sha256"] = _sha256(directory / WEIGHTS_FILE)
    atomic_write(directory / SPEC_FILE, lambda path: Path(path).write_text(json.dumps(info, indent=2)))
    return directory


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


MAX_SPEC_BYTES = 16 * 2**20  # a model.json lists kept indices: a few MiB for the largest backbone


def _field(info: dict, name: str, kind: type | tuple[type, ...], check=None, why: str = ""):
    """info[name] when it is a ``kind`` (booleans are not numbers) that passes ``check``; else CheckpointError."""
    value = info.get(name)
    if (name not in info or isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
            or (check is not None and not check(value))):
        raise CheckpointError(f"{SPEC_FILE}: field {name!r} {why or 'is missing or has the wrong type'} "
                              f"(found {str(value)[:80]!r}). The file was changed after saving; save the model again.")
    return value


def _read_info(spec_path: Path) -> dict:
    """model.json, checked field by field: never a traceback, never a silently wrong accuracy."""
    if spec_path.stat().st_size > MAX_SPEC_BYTES:
        raise CheckpointError(f"{spec_path} is larger than {MAX_SPEC_BYTES // 2**20} MiB: not one we wrote.")
    try:
        info = json.loads(spec_path.read_text())
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly nested JSON
        raise CheckpointError(f"{spec_path} is not valid JSON ({str(error)[:120]}).") from error
    if not isinstance(info, dict):
        raise CheckpointError(f"{spec_path} does not hold a JSON object.")
    if info.get("format_version") == 1:
        raise CheckpointError(f"{spec_path} was saved by an earlier CPrune (format 1), whose files cannot be checked "
                              "for changes: fine-tune the model again with --save to get a verifiable one.")
    _field(info, "format_version", int, lambda v: v == FORMAT_VERSION, f"must be {FORMAT_VERSION}")
    _field(info, "weights_sha256", str, lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v),
           "must be the SHA-256 of model.pt (64 hexadecimal digits)")
    spec = get_spec(_field(info, "backbone", str, lambda v: v in BACKBONES, "must name a known backbone"))
    _field(info, "classes", list, lambda v: len(v) >= 2 and all(isinstance(c, str) and c for c in v)
           and len(set(v)) == len(v), "must list two or more distinct class names")
    _field(info, "num_classes", int, lambda v: v == len(info["classes"]), "must equal the number of classes")
    _field(info, "image_size", int, lambda v: v in spec.input_sizes, f"must be in {spec.input_sizes}")
    for name, expected in (("mean", spec.mean), ("std", spec.std)):
        _field(info, name, list, lambda v, e=expected: len(v) == len(e) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isclose(x, y, abs_tol=1e-6)
            for x, y in zip(v, e)), f"must be {spec.name}'s preprocessing {list(expected)}")
    _field(info, "kept", dict, lambda v: all(
        isinstance(layer, str) and isinstance(indices, list) and indices
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)
        and len(set(indices)) == len(indices) for layer, indices in v.items()),
        "must map layer names to lists of distinct neuron indices")
    return info


def load_model(directory: str | Path) -> SavedModel:
    """Rebuild a saved model (eval mode, CPU). CheckpointError, naming the field or the weights, when
    the directory is not a saved model or anything in it was changed after saving."""
    directory = user_path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise CheckpointError(f"{directory} is not a saved model directory (no {SPEC_FILE}). "
                              "Save one with `cprune finetune ... --save DIR`.")
    info = _read_info(spec_path)
    weights = _saved_weights(directory / WEIGHTS_FILE, info)  # before building anything on model.json's word
    spec = get_spec(info["backbone"])
    model = load_backbone(spec.name, "random").model
    try:
        apply_kept(model, spec, info["kept"])
    except ConfigError as error:
        raise CheckpointError(f"{SPEC_FILE}: field 'kept' does not fit {spec.name}: {error}") from error
    try:
        replace_classifier(model, spec, info["num_classes"])
    except ConfigError as error:
        raise CheckpointError(f"{SPEC_FILE}: field 'classes' does not fit {spec.name}: {error}") from error
    # model.pt's names and shapes against the model model.json describes, before any value is read.
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    state = state_dict_of(weights, ExpectedState(shapes, SPEC_FILE, "Save the model again."))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{directory / WEIGHTS_FILE} does not match {SPEC_FILE} "
                              f"({' '.join(str(error).split())[:300]}): save the model again.") from error
    return SavedModel(model.eval(), spec, info)


def _saved_weights(path: Path, info: dict) -> WeightsFile:
    """model.pt, opened (no value read) once its digest is model.json's and the model.json it carries is the
    one beside it; CheckpointError naming the file, or model.json's first field that differs, otherwise."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the saved model is incomplete; save it again.")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is larger than {MAX_CHECKPOINT_BYTES // 2**20} MiB: not one we wrote.")
    if _sha256(path) != info["weights_sha256"]:
        raise CheckpointError(f"{path} was changed after saving (its SHA-256 is not model.json's weights_sha256): "
                              "save the model again.")
    weights = read_weights_file(path, WeightsBudget(max_file_bytes=MAX_CHECKPOINT_BYTES))
    try:
        facts = json.loads(weights.metadata.get("model_json", ""))
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        raise CheckpointError(f"{path} does not carry the fields it was saved with: it was not written by "
                              "save_model. Save the model again.")
    for name in sorted((set(info) | set(facts)) - {"weights_sha256"}):
        if info.get(name) != facts.get(name):
            raise CheckpointError(f"{SPEC_FILE}: field {name!r} is not what was saved with the weights "
                                  f"(found {str(info.get(name))[:80]!r}). The file was changed after saving; "
                                  "save the model again.")
    return weights


def model_files(directory: str | Path) -> list[Path]:
    """The model's own files in ``directory`` (MODEL_FILES that are regular files, not links), whatever
    else lies there: what a download of the model may contain."""
    directory = Path(directory)
    return [directory / name for name in MODEL_FILES
            if (directory / name).is_file() and not (directory / name).is_symlink()]


def zip_model(directory: str | Path) -> bytes:
    """A zip archive of the model's own files in ``directory`` (``model_files``: nothing else that lies there),
    each under its bare name, so unzipping gives a folder ``load_model`` reads. Empty of files when none is left.

    Example: ``Path("model.zip").write_bytes(zip_model(run.model_dir))``.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in model_files(directory):
            archive.write(file, file.name)
    return buffer.getvalue()


def export_torchscript(model: nn.Module, path: str | Path, image_size: int) -> Path:
    """Trace the model (eval mode, CPU) to TorchScript at ``path``."""
    path = Path(path)
    model = model.eval().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still the portable format
        traced = torch.jit.trace(model, torch.zeros(1, 3, image_size, image_size))
        atomic_write(path, lambda temporary: torch.jit.save(traced, temporary))
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

    atomic_write(path, write)
    return path
