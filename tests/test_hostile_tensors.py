"""Files whose size on disk says nothing of their size in memory: expanded views, sparse and meta tensors,
compressed records, shapes far beyond the backbone's. Each is refused with one sentence before any value
is read, by every reader: registry.read_state_dict (uploads, --checkpoint), checkpoint.load_model (model.pt)
and the weights-file reader (cprune graph --weights)."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import time
import tracemalloc
import warnings
import zipfile

import pytest
import torch
import torchvision

from cprune_core import cli
from cprune_core.checkpoint import FORMAT_VERSION, SPEC_FILE, WEIGHTS_FILE, load_model
from cprune_core.errors import CheckpointError
from cprune_core.registry import (MAX_CLASSES, checkpoint_shapes, get_spec, load_backbone, read_state_dict,
                                  replace_classifier, shape_mismatch)
from cprune_core.errors import WeightsFileError
from cprune_core.weights import DEFAULT_BUDGET, WeightsBudget, onnx_format, open_weights_file, safetensors_format
from cprune_core.weights.safetensors_format import MAX_HEADER_BYTES
from weights_files import raw_safetensors, save_safetensors


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
    assert error.startswith("error: expanded.pt: tensor 'w' claims 1,000,000,000,000 elements") and error.count("\n") == 1


# --- parsers bounded by what they may produce, before anything is expanded ---------------------------------

def bounded(open_model, path) -> tuple[str, float, float]:
    """(the refusal, CPU seconds, peak MB of Python allocations) of opening ``path``: CPU time, not wall time, so a
    busy machine (other processes, a lower priority) does not make a bounded parse look unbounded."""
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(CheckpointError) as refused:
            open_model(path)
        return str(refused.value), time.process_time() - started, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def torch_zip_with_pickle(pickled: bytes) -> bytes:
    """A torch.save zip archive whose data.pkl is ``pickled``."""
    saved, forged = io.BytesIO(), io.BytesIO()
    torch.save({"w": torch.zeros(2, 2)}, saved)
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(forged, "w", zipfile.ZIP_STORED) as target:
        for record in source.infolist():
            target.writestr(record.filename, pickled if record.filename.endswith("/data.pkl")
                            else source.read(record.filename))
    return forged.getvalue()


NESTED_LISTS = b"\x80\x02" + b"]" * 8_000_000 + b"a" * 7_999_999 + b"."  # 16 MB: 8 million lists, each in the last


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_pickle_of_nested_empty_lists_is_refused_in_bounded_time_and_memory(tmp_path, layout):
    path = tmp_path / "lists.pt"
    legacy_magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    path.write_bytes(torch_zip_with_pickle(NESTED_LISTS) if layout == "zip" else legacy_magic + NESTED_LISTS)
    for reader in (open_weights_file, read_state_dict):
        message, seconds, peak_mb = bounded(reader, path)
        # Before the scan: +1.0-1.3 GB and 10-39 s. Generous bounds for a loaded machine; ~0.05 s and ~20 MB here.
        assert "is not a plain state dict: its pickle holds more than 100,000 objects for 0 tensors" in message
        assert seconds < 10 and peak_mb < 100, (seconds, peak_mb)


def test_a_state_dict_of_aliases_is_refused_before_it_is_unpickled(tmp_path):
    shared = torch.zeros(2, 2)
    path = tmp_path / "aliases.pt"
    torch.save({f"w{i}": shared for i in range(200_000)}, path)  # one storage, 200,000 names
    message, seconds, peak_mb = bounded(open_weights_file, path)
    assert "for 1 tensors" in message and seconds < 10 and peak_mb < 100, (message, seconds, peak_mb)


def test_tied_weights_in_a_state_dict_are_listed_once_and_counted_once(tmp_path):
    embedding = torch.randn(50, 8)
    torch.save({"embed.weight": embedding, "head.weight": embedding, "fc.weight": torch.randn(4, 8)}, tmp_path / "t.pt")
    weights = open_weights_file(tmp_path / "t.pt")
    assert [layer.name for layer in weights.layers] == ["embed", "fc"]
    assert weights.layer("embed").tied == ("head.weight",)
    assert dict(weights.skipped)["head.weight"] == "the same values as 'embed.weight' (tied or shared weights): listed once"


def test_a_safetensors_header_of_empty_lists_is_refused_before_it_is_parsed(tmp_path):
    text = b'{"a": [' + b"[]," * 10_000_000 + b"[]]}"  # 30 MB: +0.75 GB once parsed
    path = tmp_path / "lists.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    message, seconds, peak_mb = bounded(open_weights_file, path)
    assert "holds 10,000,002 JSON arrays; a model's needs at most 200,002" in message
    assert seconds < 10 and peak_mb < 200, (seconds, peak_mb)  # the text and its skeleton; ~70 MB here
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{" + bytes(MAX_HEADER_BYTES))
    assert f"the limit is {MAX_HEADER_BYTES:,}" in bounded(open_weights_file, huge)[0]


def test_a_cap_on_tensors_per_model(tmp_path):
    assert DEFAULT_BUDGET.max_tensors == 100_000
    path = save_safetensors({f"t{i}": torch.ones(2, 2) for i in range(101)}, tmp_path / "many.safetensors")
    with pytest.raises(WeightsFileError, match="holds more than 100 tensors; the limit is 100 per model"):
        open_weights_file(path, WeightsBudget(max_tensors=100))
    torch.save({f"t{i}": torch.ones(2, 2) for i in range(101)}, tmp_path / "many.pt")
    with pytest.raises(WeightsFileError, match="references more than 100 tensors"):
        open_weights_file(tmp_path / "many.pt", WeightsBudget(max_tensors=100))


def onnx_of_empty_nodes(count: int) -> bytes:
    """An ONNX model whose graph holds ``count`` empty nodes (two bytes each on disk)."""
    graph = b"\x0a\x00" * count
    length = bytearray()
    size = len(graph)
    while True:
        length.append((size & 0x7F) | (0x80 if size >> 7 else 0))
        size >>= 7
        if not size:
            break
    return b"\x08\x08" + b"\x3a" + bytes(length) + graph  # ir_version 8; field 7 (graph)


def test_an_onnx_file_of_empty_nodes_is_counted_and_refused_before_it_is_parsed(tmp_path, monkeypatch):
    path = tmp_path / "nodes.onnx"
    path.write_bytes(onnx_of_empty_nodes(10_000_000))  # 20 MB: +1.3-1.7 GB once parsed
    parsed = []
    monkeypatch.setattr(onnx_format.onnx.ModelProto, "ParseFromString", lambda *args: parsed.append(args))
    message, seconds, peak_mb = bounded(open_weights_file, path)
    assert "holds more than 500,000 messages, the limit for an ONNX model (checked before it is parsed)" in message
    assert parsed == [] and seconds < 30 and peak_mb < 100, (seconds, peak_mb)


def test_ten_thousand_tiny_tensors_are_read_from_one_parse_of_the_header(tmp_path, monkeypatch, capsys):
    path = save_safetensors({f"block{i}.weight": torch.randn(3, 2) for i in range(10_000)}, tmp_path / "tiny.safetensors")
    parses = []
    original = safetensors_format._read_header
    monkeypatch.setattr(safetensors_format, "_read_header", lambda *args: parses.append(1) or original(*args))
    weights = open_weights_file(path)
    for layer in weights.layers:  # as the app reads an upload: every layer once
        weights.weight(layer.name)
    assert len(weights.layers) == 10_000 and parses == [1]
    assert [layer.name for layer in weights.layers][:3] == ["block0", "block1", "block2"]
    small = save_safetensors({f"block{i}.weight": torch.randn(3, 2) for i in range(200)}, tmp_path / "small.safetensors")
    assert cli.main(["graph", "--weights", str(small), "--layer", "all", "--out", str(tmp_path)]) == 0
    assert parses == [1, 1] and "200 layers" in capsys.readouterr().out


HOSTILE_NAMES = ["layer1²", "9" * 4300, "x\udc80", "title\x1b]0;pwned\x07\r.weight", ".", "..weight", "layer10",
                 "layer2"]


@pytest.fixture
def hostile_names_file(tmp_path):
    return raw_safetensors({name: torch.randn(3, 2) for name in HOSTILE_NAMES}, tmp_path / "names.safetensors")


def test_any_name_sorts_lists_and_prints_escaped(hostile_names_file, capsys):
    weights = open_weights_file(hostile_names_file)
    names = [layer.name for layer in weights.layers]
    assert names.index("layer2") < names.index("layer10") and "x\\udc80" in names and "layer1²" in names
    assert "title\\x1b]0;pwned\\x07\\r" in names and "." in names and "..weight" in names
    assert torch.equal(weights.weight("x\\udc80"), weights.weight("x\udc80"))  # by its printable or its own name
    assert cli.main(["graph", "--weights", str(hostile_names_file)]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # no lone surrogate left
    assert not any(char in out for char in "\x1b\x07\r") and "title\\x1b]0;pwned\\x07\\r" in out


def test_a_layer_name_never_becomes_a_path_outside_the_output_folder(hostile_names_file, tmp_path, capsys):
    out = tmp_path / "out"
    around = set(tmp_path.iterdir())
    code = cli.main(["graph", "--weights", str(hostile_names_file), "--layer", ".", "--out", str(out)])
    assert code == 2 and "makes no file name" in capsys.readouterr().err
    for layer, written in (("..weight", "weight.graphml"), ("title\\x1b]0;pwned\\x07\\r", "title_x1b_0_pwned_x07_r.graphml")):
        assert cli.main(["graph", "--weights", str(hostile_names_file), "--layer", layer, "--out", str(out)]) == 0
        assert (out / written).is_file()
    assert set(tmp_path.iterdir()) == around | {out}, "nothing written beside the output folder"


def test_a_zip_of_too_many_records_is_refused_from_its_end_record(tmp_path):
    path = tmp_path / "records.pt"
    path.write_bytes(torch_zip_with_pickle(pickle.dumps({}, protocol=2)))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as archive:
        for index in range(DEFAULT_BUDGET.max_tensors + 100):  # zip64: more than 65,535 records
            archive.writestr(f"archive/extra/{index}", b"")
    message, seconds, peak_mb = bounded(open_weights_file, path)
    assert "is a zip archive of 100,10" in message and "records" in message and peak_mb < 20, (message, peak_mb)
