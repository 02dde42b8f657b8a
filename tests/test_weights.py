"""Weights files of any origin (safetensors, ONNX, PyTorch state dicts) as layers, made in the tests; files
that are not what they say, or over a budget, refused with one sentence."""
from __future__ import annotations

import json
import struct
import zipfile

import onnx
import pytest
import torch
from torch import nn

from cprune_core import registry
from cprune_core.errors import CheckpointError, ConfigError, NonFiniteWeightsError, WeightsFileError
from cprune_core.graph import cosine_similarity
from cprune_core.model_source import BackboneSource, FileSource
from cprune_core.registry import backbones_fitting, load_backbone
from cprune_core.weights import WeightsBudget, open_weights_file
from weights_files import resnet18_safetensors, save_safetensors


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision model's weights (random init, 7 classes) as safetensors, and the model."""
    return resnet18_safetensors(tmp_path_factory.mktemp("r18"), classes=7)


def test_a_torchvision_safetensors_file_lists_every_float_weight_of_rank_2_or_4(resnet18_file):
    path, model = resnet18_file
    weights = open_weights_file(path)
    expected = {name.removesuffix(".weight"): tuple(tensor.shape) for name, tensor in model.state_dict().items()
                if tensor.is_floating_point() and tensor.ndim in (2, 4)}
    assert {layer.name: layer.shape for layer in weights.layers} == expected
    assert [layer.name for layer in weights.layers][:3] == ["conv1", "fc", "layer1.0.conv1"]  # natural order
    assert torch.equal(weights.weight_vectors("layer1.0.conv1"), model.layer1[0].conv1.weight.flatten(1))
    assert weights.weight("layer1.0.conv1").shape == (64, 64, 3, 3)  # a neuron's filter image: weight[neuron]
    assert weights.layer("fc.weight").name == "fc"  # by its tensor's name too


def test_a_file_that_fits_a_backbone_is_offered_and_loaded_as_its_checkpoint(resnet18_file):
    path, model = resnet18_file
    source = FileSource.open(path)
    assert source.fits == ["resnet18"]
    loaded = load_backbone("resnet18", "checkpoint", path)
    assert loaded.model.fc.out_features == 7
    assert torch.equal(loaded.model.layer2[0].conv1.weight, model.layer2[0].conv1.weight)
    assert backbones_fitting({"fc.weight": (7, 512)}) == []


def test_a_file_without_any_backbones_classifier_builds_no_backbone(monkeypatch):
    def built(name):
        raise AssertionError(f"{name} was built")

    monkeypatch.setattr(registry, "checkpoint_shapes", built)
    assert backbones_fitting({"h.0.mlp.fc.weight": (3072, 768), "h.0.mlp.fc.bias": (3072,)}) == []


def test_a_file_layer_and_a_backbone_layer_give_the_core_the_same_vectors(resnet18_file):
    path, model = resnet18_file
    backbone = BackboneSource.load("resnet18", "checkpoint", path)
    file = FileSource.open(path)
    assert torch.equal(backbone.weight_vectors("layer4.1.conv2"), file.weight_vectors("layer4.1.conv2"))
    assert torch.equal(backbone.weight("layer4.1.conv2"), file.weight("layer4.1.conv2"))
    assert set(backbone.graph_layers) <= set(file.graph_layers)
    row = next(info for info in file.layers if info.name == "layer4.1.conv2")
    assert (row.neurons, row.vector_length, row.prunable) == (512, 4608, False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_transformer_like_stack_in_half_precision_is_read_as_float32(tmp_path, dtype):
    torch.manual_seed(0)
    state = {}
    for block in range(2):
        state[f"h.{block}.attn.qkv.weight"] = torch.randn(2304, 768)
        state[f"h.{block}.mlp.fc.weight"] = torch.randn(3072, 768)
        state[f"h.{block}.mlp.proj.weight"] = torch.randn(768, 3072)
        state[f"h.{block}.ln.weight"] = torch.ones(768)
    stored = {name: tensor.to(dtype) for name, tensor in state.items()}
    weights = open_weights_file(save_safetensors(stored, tmp_path / "stack.safetensors"))
    assert [layer.name for layer in weights.layers] == [
        "h.0.attn.qkv", "h.0.mlp.fc", "h.0.mlp.proj", "h.1.attn.qkv", "h.1.mlp.fc", "h.1.mlp.proj"]
    vectors = weights.weight_vectors("h.1.mlp.fc")
    assert vectors.dtype == torch.float32 and vectors.shape == (3072, 768)
    assert torch.equal(vectors, stored["h.1.mlp.fc.weight"].float())
    assert cosine_similarity(vectors).shape == (3072, 3072)


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)  # exported as Gemm (transB=1): stored outputs x inputs
        self.tokens = nn.Linear(8, 6)  # on a 3-D input: exported as MatMul, stored inputs x outputs

    def forward(self, x):
        features = self.pool(torch.relu(self.conv(x))).flatten(1)
        return self.fc(features) + self.tokens(features.unsqueeze(1)).sum((1, 2), keepdim=True).squeeze(1)


def test_an_onnx_export_of_a_small_convnet_lists_its_initializers_neurons_first(tmp_path):
    model = SmallConvNet().eval()
    path = tmp_path / "net.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False)  # folds the transpose
    weights = open_weights_file(path)
    by_shape = {layer.shape: layer for layer in weights.layers}
    assert set(by_shape) == {(8, 3, 3, 3), (4, 8), (6, 8)}
    assert torch.equal(weights.weight(by_shape[(8, 3, 3, 3)].name), model.conv.weight)
    assert torch.equal(weights.weight(by_shape[(4, 8)].name), model.fc.weight)
    assert by_shape[(6, 8)].transposed and torch.equal(weights.weight(by_shape[(6, 8)].name), model.tokens.weight)


def test_onnx_external_data_is_never_followed(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(struct.pack("<4f", 1, 2, 3, 4))
    weight = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, (2, 2), [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", str(secret)), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 2))],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (1, 2))], [weight])
    path = tmp_path / "external.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(WeightsFileError, match="in other files .*not followed"):
        open_weights_file(path)


def test_a_nan_layer_is_listed_and_refused_when_read_naming_it(tmp_path):
    weight = torch.randn(4, 3)
    weight[2, 1] = float("nan")
    weights = open_weights_file(save_safetensors({"ok.weight": torch.randn(4, 3), "bad.weight": weight},
                                                 tmp_path / "nan.safetensors"))
    assert weights.weight_vectors("ok").shape == (4, 3)
    with pytest.raises(NonFiniteWeightsError, match=r"Layer bad has NaN or Inf weights in 1 neuron\(s\) \(first: \[2\]\)"):
        weights.weight_vectors("bad")


def test_integer_and_complex_tensors_are_no_layers_and_an_integer_only_file_is_refused(tmp_path):
    mixed = open_weights_file(save_safetensors({"q.weight": torch.ones(4, 4, dtype=torch.int8), "f.weight": torch.ones(4, 4)},
                                               tmp_path / "mixed.safetensors"))
    assert [layer.name for layer in mixed.layers] == ["f"] and "int8" in mixed.skipped["q.weight"]
    with pytest.raises(WeightsFileError, match="'q.weight' is no layer: int8"):
        mixed.weight("q.weight")
    with pytest.raises(WeightsFileError, match="holds no floating-point weight.*int8"):
        open_weights_file(save_safetensors({"q.weight": torch.ones(4, 4, dtype=torch.int8)}, tmp_path / "int.safetensors"))
    torch.save({"c": torch.ones(3, 3, dtype=torch.complex64)}, tmp_path / "complex.pt")
    with pytest.raises(WeightsFileError, match="complex64"):
        open_weights_file(tmp_path / "complex.pt")
    with pytest.raises(ConfigError, match="has no layer 'nope'; its 1 layers include f"):
        mixed.layer("nope")


@pytest.fixture
def files(tmp_path, resnet18_file):
    """One small file of each format."""
    state = {"a.weight": torch.randn(6, 5), "a.bias": torch.zeros(6)}
    pt = tmp_path / "a.pt"
    torch.save(state, pt)
    onnx_path = tmp_path / "a.onnx"
    torch.onnx.export(nn.Linear(5, 6), (torch.zeros(1, 5),), str(onnx_path), dynamo=False)
    return {"safetensors": save_safetensors(state, tmp_path / "a.safetensors"), "torch": pt, "onnx": onnx_path}


@pytest.mark.parametrize("content, named, message", [
    ("torch", "x.safetensors", "is not a safetensors file: its content looks like a PyTorch state dict.*extension .pt"),
    ("safetensors", "x.onnx", "is not an ONNX model: its content looks like a safetensors file.*extension .safetensors"),
    ("onnx", "x.pt", "is not a PyTorch state dict .*: its content looks like an ONNX model.*extension .onnx"),
    ("safetensors", "x.pth", "is not a PyTorch state dict"),
])
def test_a_file_that_is_not_what_its_extension_says_is_refused(files, tmp_path, content, named, message):
    path = tmp_path / named
    path.write_bytes(files[content].read_bytes())
    with pytest.raises(WeightsFileError, match=message):
        open_weights_file(path)


def test_any_extension_is_read_by_its_content(files, tmp_path):
    for kind, source in files.items():
        path = tmp_path / f"{kind}.weights"
        path.write_bytes(source.read_bytes())
        assert open_weights_file(path).format == kind


@pytest.mark.parametrize("kind, keep, message", [
    ("safetensors", 5, "not a safetensors file .*truncated"),
    ("safetensors", 40, "not a safetensors file .*truncated"),
    ("safetensors", -8, "points outside the file"),
    ("torch", -30, "damaged or truncated zip"),
    ("onnx", -10, "not an ONNX model"),
    ("onnx", 0, "not an ONNX model .no IR version or no graph"),
])
def test_truncated_files_are_refused(files, tmp_path, kind, keep, message):
    data = files[kind].read_bytes()
    path = tmp_path / f"cut{files[kind].suffix}"
    path.write_bytes(data[:keep])
    with pytest.raises(WeightsFileError, match=message):
        open_weights_file(path)


def test_a_safetensors_header_that_overlaps_or_lies_about_sizes_is_refused(tmp_path):
    def write(header: dict, data: bytes):
        text = json.dumps(header).encode()
        path = tmp_path / "forged.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + data)
        return path

    overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    with pytest.raises(WeightsFileError, match="share bytes"):
        open_weights_file(write(overlap, bytes(12)))
    claims = {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}
    with pytest.raises(WeightsFileError, match="claims 1,000,000 elements"):
        open_weights_file(write(claims, bytes(16)))
    with pytest.raises(WeightsFileError, match="unknown dtype"):
        open_weights_file(write({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)))


def test_files_and_tensors_over_the_stated_budget_are_refused(files):
    with pytest.raises(WeightsFileError, match="MiB; the limit is"):
        open_weights_file(files["safetensors"], WeightsBudget(max_file_bytes=100))
    for kind in files:
        with pytest.raises(WeightsFileError, match="30 elements .*over the limit of 10 per tensor"):
            open_weights_file(files[kind], WeightsBudget(max_tensor_elements=10))


def test_a_compressed_or_legacy_torch_file_is_refused_before_torch_reads_it(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(100, 100)}, plain)
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record.filename))
    with pytest.raises(WeightsFileError, match="is compressed"):
        open_weights_file(deflated)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(3, 3)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsFileError, match="legacy format"):
        open_weights_file(legacy)


def test_checkpoint_errors_keep_their_kind():
    assert issubclass(WeightsFileError, CheckpointError)
