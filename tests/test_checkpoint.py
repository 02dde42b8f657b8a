"""Saved models that were changed after saving are refused with a message naming what is wrong."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cprune_core.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_model, save_model
from cprune_core.engine import run
from cprune_core.errors import CheckpointError
from cprune_core.schema import FinetuneConfig
from tiny_data import make_tiny_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("saved")
    data = make_tiny_folder(base / "colours")
    result = run(FinetuneConfig(dataset="folder", dataset_root=str(data), image_size=64, epochs=1, batch_size=4,
                                val_fraction=0.25, test_fraction=0.25, keep=0.25))
    return save_model(result, base / "model"), data


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(saved[0], target)
    return target


def change_info(folder: Path, change) -> None:
    path = folder / SPEC_FILE
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


TAMPERED_INFO = [
    (lambda i: i.pop("classes"), "field 'classes'"),
    (lambda i: i.update(classes="red,green,blue"), "field 'classes'"),
    (lambda i: i.update(classes=["red", "red", "blue"]), "field 'classes'"),
    (lambda i: i.update(num_classes=7), "field 'num_classes'"),
    (lambda i: i.update(image_size=8), "field 'image_size'"),
    (lambda i: i.update(image_size="64"), "field 'image_size'"),
    (lambda i: i.update(image_size=True), "field 'image_size'"),
    (lambda i: i.update(mean=[0.0, 0.0, 0.0]), "field 'mean'"),
    (lambda i: i.update(std=[1, 1]), "field 'std'"),
    (lambda i: i.update(backbone="alexnet"), "field 'backbone'"),
    (lambda i: i.update(format_version=99), "field 'format_version'"),
    (lambda i: i.update(kept={"head.1": [0, 1, 99_999]}), "field 'kept' does not fit"),
    (lambda i: i.update(kept={"classifier": [0, 1]}), "field 'kept' does not fit"),
    (lambda i: i.update(kept={"head.1": [-1, 2]}), "field 'kept'"),
    (lambda i: i.update(kept={"head.1": [1, 1, 2]}), "field 'kept'"),
    (lambda i: i.update(kept={"head.1": list(range(300))}), "does not match model.json"),
    (lambda i: i.update(classes=["red", "green", "blue", "cyan"], num_classes=4), "does not match model.json"),
]


@pytest.mark.parametrize("change, message", TAMPERED_INFO)
def test_a_tampered_model_json_is_refused_naming_the_field(copy, change, message):
    change_info(copy, change)
    with pytest.raises(CheckpointError, match=message):
        load_model(copy)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_a_model_json_that_is_no_object_is_refused(copy, text, message):
    (copy / SPEC_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_model(copy)


@pytest.mark.parametrize("weights, message", [
    (b"garbage", "Could not read"),
    ({"head.1.weight": [1, 2]}, "not a state dict"),
    ({1: torch.zeros(2)}, "not a state dict"),
    ("nan", "NaN or Inf"),
])
def test_tampered_weights_are_refused(copy, weights, message):
    path = copy / WEIGHTS_FILE
    if weights == "nan":
        state = torch.load(path, weights_only=True)
        state["classifier.weight"][0, 0] = float("nan")
        torch.save(state, path)
    elif isinstance(weights, bytes):
        path.write_bytes(weights)
    else:
        torch.save(weights, path)
    with pytest.raises(CheckpointError, match=message):
        load_model(copy)


def test_evaluate_reports_a_tampered_model_in_one_line_with_the_input_exit_code(copy, saved):
    change_info(copy, lambda i: i.update(image_size="big"))
    completed = subprocess.run([sys.executable, "-m", "cprune_core", "evaluate", "--model", str(copy),
                                "--root", str(saved[1])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 3
    assert completed.stderr.strip().count("\n") == 0 and "field 'image_size'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_untouched_model_still_loads(saved):
    assert load_model(saved[0]).classes == ["blue", "green", "red"]
