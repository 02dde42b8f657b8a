"""Saved models that were changed after saving are refused with a message naming what is wrong."""
from __future__ import annotations

import hashlib
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


def sign(folder: Path) -> None:
    """Put model.pt's own digest into model.json, as someone who changed model.pt on purpose would."""
    change_info(folder, lambda info: info.update(weights_sha256=hashlib.sha256((folder / WEIGHTS_FILE).read_bytes())
                                                 .hexdigest()))


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
    (lambda i: i.update(kept={"head.1": [0, 1, 99_999]}), "field 'kept'"),
    (lambda i: i.update(kept={"classifier": [0, 1]}), "field 'kept'"),
    (lambda i: i.update(kept={"head.1": [-1, 2]}), "field 'kept'"),
    (lambda i: i.update(kept={"head.1": [1, 1, 2]}), "field 'kept'"),
    (lambda i: i.update(kept={"head.1": list(range(300))}), "field 'kept' is not what was saved"),
    (lambda i: i.update(classes=["red", "green", "blue", "cyan"], num_classes=4), "field 'classes' is not what"),
    # Well-formed values that would change what the model means: each is caught against model.pt's copy.
    (lambda i: i.update(classes=i["classes"][::-1]), "field 'classes' is not what was saved"),
    (lambda i: i.update(kept={layer: [k + 1 for k in kept] for layer, kept in i["kept"].items()}),
     "field 'kept' is not what was saved"),
    (lambda i: i.update(test_acc=0.99), "field 'test_acc' is not what was saved"),
    (lambda i: i.update(criterion="l1"), "field 'criterion' is not what was saved"),
    (lambda i: i.update(image_size=96), "field 'image_size' is not what was saved"),
    (lambda i: i.update(extra="added"), "field 'extra' is not what was saved"),
    (lambda i: i.pop("config"), "field 'config' is not what was saved"),
    (lambda i: i.update(weights_sha256="0" * 64), "changed after saving"),
    (lambda i: i.update(weights_sha256="not a digest"), "field 'weights_sha256'"),
    (lambda i: i.update(format_version=1), "earlier CPrune"),
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
        saved = torch.load(path, weights_only=True)
        saved["state_dict"]["classifier.weight"][0, 0] = float("nan")
        torch.save(saved, path)
    elif isinstance(weights, bytes):
        path.write_bytes(weights)
    else:
        torch.save({"state_dict": weights, "model_json": torch.load(path, weights_only=True)["model_json"]}, path)
    with pytest.raises(CheckpointError, match="changed after saving"):
        load_model(copy)
    sign(copy)  # the digest now agrees: what the file holds is checked next
    with pytest.raises(CheckpointError, match=message):
        load_model(copy)


def test_weights_swapped_for_another_runs_are_refused(copy, saved, tmp_path):
    other = tmp_path / "other"
    result = run(FinetuneConfig(dataset="folder", dataset_root=str(saved[1]), image_size=64, epochs=1, batch_size=4,
                                val_fraction=0.25, test_fraction=0.25, keep=0.25, seed=1))
    save_model(result, other)
    shutil.copy(other / WEIGHTS_FILE, copy / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="changed after saving"):
        load_model(copy)
    sign(copy)  # the other run's model.json copy differs from this model.json: its seed, its accuracy
    with pytest.raises(CheckpointError, match="is not what was saved"):
        load_model(copy)


@pytest.mark.parametrize("kept, message", [
    ({"head.1": [0, 1, 99_999]}, "field 'kept' does not fit"),
    ({"classifier": [0, 1]}, "field 'kept' does not fit"),
    ({"head.1": list(range(300))}, "does not match model.json"),
])
def test_both_files_forged_alike_still_meet_the_architecture_checks(copy, kept, message):
    """Someone who rewrites model.json, model.pt's copy of it and the digest together made a model of their own;
    it must still fit the backbone and its weights."""
    change_info(copy, lambda i: i.update(kept=kept))
    path = copy / WEIGHTS_FILE
    saved = torch.load(path, weights_only=True)
    facts = json.loads(saved["model_json"])
    facts["kept"] = kept
    torch.save({**saved, "model_json": json.dumps(facts, sort_keys=True)}, path)
    sign(copy)
    with pytest.raises(CheckpointError, match=message):
        load_model(copy)


def test_a_plain_state_dict_in_place_of_model_pt_is_refused(copy):
    path = copy / WEIGHTS_FILE
    torch.save(torch.load(path, weights_only=True)["state_dict"], path)
    sign(copy)
    with pytest.raises(CheckpointError, match="does not carry the fields it was saved with"):
        load_model(copy)


@pytest.mark.slow
@pytest.mark.parametrize("change, field", [
    (lambda i: i.update(image_size="big"), "field 'image_size'"),
    (lambda i: i.update(classes=i["classes"][::-1]), "field 'classes'"),  # evaluate would report the wrong accuracy
])
def test_evaluate_reports_a_tampered_model_in_one_line_with_the_input_exit_code(copy, saved, change, field):
    change_info(copy, change)
    completed = subprocess.run([sys.executable, "-m", "cprune_core", "evaluate", "--model", str(copy),
                                "--root", str(saved[1])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 3
    assert completed.stderr.strip().count("\n") == 0 and field in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_untouched_model_still_loads(saved):
    assert load_model(saved[0]).classes == ["blue", "green", "red"]
