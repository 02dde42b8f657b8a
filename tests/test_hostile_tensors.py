"""Files whose size on disk says nothing of their size in memory: expanded views, sparse and meta tensors,
compressed records, shapes far beyond the backbone's. Each is refused with one sentence before any value
is read, by every reader: registry.read_state_dict (uploads, --checkpoint), checkpoint.load_model (model.pt)
and the weights-file reader (cprune graph --weights)."""
from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch
import torchvision

from cprune_core import cli
from cprune_core.checkpoint import FORMAT_VERSION, SPEC_FILE, WEIGHTS_FILE, load_model
from cprune_core.errors import CheckpointError
from cprune_core.registry import (MAX_CLASSES, checkpoint_shapes, get_spec, load_backbone, read_state_dict,
                                  replace_classifier, shape_mismatch)
from cprune_core.weights import open_weights_file


def sparse(shape, csr: bool = False) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sparse invariants, CSR in beta
        tensor = torch.sparse_coo_tensor(torch.zeros(len(shape), 1, dtype=torch.long), torch.tensor([1.0]), shape)
        return tensor.to_sparse_csr() if csr else tensor


HOSTILE = {  # name -> (tensor, what the refusal says)
    "expanded": (torch.zeros(1).expand(10**6, 10**6), "1,000,000,000,000 elements"),  # 4 bytes seen as 4 TB
    "broadcast": (torch.zeros(1, 1).expand(1000, 1000), "claims 1,000,000 elements .* holds 4 bytes"),
    "strided": (torch.zeros(4).as_strided((1000, 1000), (0, 0)), "an expanded or broadcast view"),
    "sparse": (sparse((10**6, 10**6)), "sparse_coo tensor"),
    "sparse_csr": (sparse((1000, 1000), csr=True), "sparse_csr tensor"),
    "meta": (torch.empty(10**6, 10**6, device="meta"), "meta tensor: it has a shape but no values"),
}


@pytest.fixture
def no_value_is_read(monkeypatch):
    """Fails the test if anything checks a value for NaN (the first thing a reader would touch)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor's values were read before its metadata was checked")
    monkeypatch.setattr(torch, "isfinite", refuse)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_every_reader_refuses_a_hostile_tensor_in_one_sentence(tmp_path, kind, no_value_is_read):
    tensor, message = HOSTILE[kind]
    path = tmp_path / f"{kind}.pt"
    torch.save({"w": tensor, "ok": torch.ones(2, 2)}, path)
    with pytest.raises(CheckpointError, match=f"{kind}.pt: tensor 'w' .*{message}"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match=message):
        open_weights_file(path)


@pytest.fixture(scope="module")
def resnet_state():
    return torchvision.models.resnet18().state_dict()


def test_a_checkpoint_with_a_view_of_the_right_shape_is_refused_before_loading(tmp_path, resnet_state,
                                                                                no_value_is_read):
    state = dict(resnet_state)
    state["layer1.0.conv1.weight"] = torch.zeros(1).expand(64, 64, 3, 3)  # the right shape, 4 bytes
    path = tmp_path / "view.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="'layer1.0.conv1.weight' claims 36,864 elements"):
        load_backbone("resnet18", "checkpoint", path)


def test_shapes_beyond_the_backbone_are_refused_before_any_value_is_read(tmp_path, resnet_state, no_value_is_read):
    state = dict(resnet_state)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 30, 30)  # ten times the kernel, stored for real
    path = tmp_path / "large.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not match resnet18: wrong shapes: layer1.0.conv1.weight"):
        load_backbone("resnet18", "checkpoint", path)


def test_a_classifier_of_any_number_of_classes_fits_up_to_the_limit():
    shapes = {name: tuple(10 if size is None else size for size in shape)  # a 10-class head
              for name, shape in checkpoint_shapes("resnet18").items()}
    assert shape_mismatch(shapes, checkpoint_shapes("resnet18")) == ""
    shapes["fc.weight"], shapes["fc.bias"] = (MAX_CLASSES + 1, 512), (MAX_CLASSES + 1,)
    assert shape_mismatch(shapes, checkpoint_shapes("resnet18")) == "wrong shapes: fc.bias, fc.weight"
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match="number of classes must be in"):
        replace_classifier(model, get_spec("resnet18"), 10**9)  # refused before a 2 TB Linear is allocated


def write_model(folder, state: dict, info: dict) -> None:
    """A saved model as save_model writes one (model.pt carrying model.json's fields, model.json model.pt's
    digest): what someone forging both files consistently would write."""
    torch.save({"state_dict": state, "model_json": json.dumps(info, sort_keys=True)}, folder / WEIGHTS_FILE)
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    (folder / SPEC_FILE).write_text(json.dumps({**info, "weights_sha256": digest}))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A saved model directory written by hand: EfficientNet-Lite0 (random init), a two-class head, nothing pruned."""
    spec = get_spec("efficientnet_lite0")
    model = load_backbone(spec.name, "random").model
    replace_classifier(model, spec, 2)
    folder = tmp_path_factory.mktemp("saved")
    info = {"format_version": FORMAT_VERSION, "backbone": spec.name, "classes": ["a", "b"], "num_classes": 2,
            "image_size": 224, "mean": list(spec.mean), "std": list(spec.std), "kept": {}}
    write_model(folder, model.state_dict(), info)
    assert load_model(folder).classes == ["a", "b"]
    return folder


def tampered(saved_model, tmp_path, change, change_info=None):
    """A copy of the saved model with its tensors (and fields) changed, both files forged alike."""
    folder = tmp_path / "model"
    folder.mkdir()
    info = json.loads((saved_model / SPEC_FILE).read_text())
    info.pop("weights_sha256")
    state = torch.load(saved_model / WEIGHTS_FILE, weights_only=True)["state_dict"]
    change(state)
    if change_info is not None:
        change_info(info)
    write_model(folder, state, info)
    return folder


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update({"classifier.weight": torch.zeros(1).expand(2, 1280)}), "claims 2,560 elements"),
    (lambda s: s.update({"classifier.weight": torch.zeros(1).expand(10**7, 10**6)}), "over the limit"),
    (lambda s: s.update({"head.1.weight": sparse((1280, 320, 1, 1))}), "sparse_coo tensor"),
    (lambda s: s.update({"head.1.weight": torch.zeros(12_800, 320, 1, 1)}),
     "model.pt does not match model.json: wrong shapes: head.1.weight"),
])
def test_load_model_refuses_a_hostile_model_pt(saved_model, tmp_path, change, message):
    folder = tampered(saved_model, tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_a_model_json_with_a_million_classes_is_refused_before_its_head_is_built(saved_model, tmp_path):
    folder = tampered(saved_model, tmp_path, lambda state: None,
                      lambda info: info.update(classes=[f"c{i}" for i in range(10**6)], num_classes=10**6))
    with pytest.raises(CheckpointError, match="field 'classes' does not fit efficientnet_lite0"):
        load_model(folder)


def test_the_command_line_says_one_line_and_exits_with_the_input_code(saved_model, tmp_path, capsys):
    folder = tampered(saved_model, tmp_path, lambda s: s.update({"classifier.weight": torch.zeros(1).expand(2, 1280)}))
    assert cli.main(["evaluate", "--model", str(folder), "--root", str(tmp_path)]) == 3
    error = capsys.readouterr().err
    assert error.startswith("error: model.pt: tensor 'classifier.weight' claims") and error.count("\n") == 1
    path = tmp_path / "expanded.pt"
    torch.save({"w": HOSTILE["expanded"][0]}, path)
    assert cli.main(["graph", "--weights", str(path)]) == 3
    error = capsys.readouterr().err
    assert error.startswith("error: expanded.pt: tensor 'w' has 1,000,000,000,000 elements") and error.count("\n") == 1
