"""Weights files of any origin (safetensors, ONNX, PyTorch state dicts) as layers, made in the tests; files
that are not what they say, or over a budget, refused with one sentence."""
from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from cprune_core import registry
from cprune_core.errors import CheckpointError, ConfigError, NonFiniteWeightsError, WeightsFileError
from cprune_core.graph import cosine_similarity
from cprune_core.model_source import BackboneSource, FileSource
from cprune_core.registry import backbones_fitting, load_backbone
from cprune_core.weights import LOCAL_BUDGET, WeightsBudget, open_weights_file, read_weights_file
from cprune_core.weights import safetensors_format
from weights_files import hugging_face_checkpoint, llama_like, resnet18_safetensors, save_safetensors


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


def test_a_nan_layer_is_listed_and_refused_when_read_naming_it(tmp_path):
    weight = torch.randn(4, 3)
    weight[2, 1] = float("nan")
    weights = open_weights_file(save_safetensors({"ok.weight": torch.randn(4, 3), "bad.weight": weight},
                                                 tmp_path / "nan.safetensors"))
    assert weights.weight_vectors("ok").shape == (4, 3)
    with pytest.raises(NonFiniteWeightsError, match=r"Layer bad has NaN or Inf weights in 1 neuron\(s\) \(first: \[2\]\)"):
        weights.weight_vectors("bad")
    with pytest.raises(NonFiniteWeightsError, match=r"\(first: \[2\]\)"):  # counted in the layer, not the block
        weights.weight_vectors("bad", rows=(1, 4))
    assert weights.weight_vectors("bad", rows=(0, 2)).shape == (2, 3)


def test_integer_and_complex_tensors_are_no_layers_and_an_integer_only_file_is_refused(tmp_path):
    mixed = open_weights_file(save_safetensors({"q.weight": torch.ones(4, 4, dtype=torch.int8), "f.weight": torch.ones(4, 4)},
                                               tmp_path / "mixed.safetensors"))
    assert [layer.name for layer in mixed.layers] == ["f"] and "int8" in dict(mixed.skipped)["q.weight"]
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
    for kind in files:  # the only layer over the per-layer budget: nothing left to explore
        with pytest.raises(WeightsFileError, match="30 elements .*over the limit of 10 per tensor; it holds no other"):
            open_weights_file(files[kind], WeightsBudget(max_tensor_elements=10))
    big = save_safetensors({"big.weight": torch.randn(6, 5), "small.weight": torch.randn(2, 3)},
                           files["safetensors"].with_name("big.safetensors"))
    weights = open_weights_file(big, WeightsBudget(max_tensor_elements=10))  # a layer over it is one skipped
    assert [layer.name for layer in weights.layers] == ["small"]
    assert dict(weights.skipped)["big.weight"].endswith("over the limit of 10 per tensor")
    with pytest.raises(WeightsFileError, match="'big.weight' has 30 elements"):  # a checkpoint is read whole
        read_weights_file(big, WeightsBudget(max_tensor_elements=10))


def test_a_compressed_torch_file_is_refused_before_torch_reads_it(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(100, 100)}, plain)
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record.filename))
    with pytest.raises(WeightsFileError, match="is compressed"):
        open_weights_file(deflated)


def test_checkpoint_errors_keep_their_kind():
    assert issubclass(WeightsFileError, CheckpointError)


# --- models of several files: a Hugging Face checkpoint, a folder of safetensors -----------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Llama-shaped model in the Hugging Face layout: 3 shards, bf16 with the MLP's down projections in fp16,
    the output head tied to the embeddings (its bytes shared)."""
    state = llama_like(blocks=2, hidden=64, mlp=160, vocab=96, dtype=torch.bfloat16)
    for block in range(2):
        name = f"model.layers.{block}.mlp.down_proj.weight"
        state[name] = state[name].half()
    folder = hugging_face_checkpoint(tmp_path_factory.mktemp("hf") / "llama", state, shards=3,
                                     tied={"lm_head.weight": "model.embed_tokens.weight"})
    return folder, state


def test_a_hugging_face_checkpoint_lists_its_projections_from_headers_and_reads_one_layers_bytes(checkpoint,
                                                                                               monkeypatch):
    folder, state = checkpoint
    reads = []
    original = safetensors_format.read_rows
    monkeypatch.setattr(safetensors_format, "read_rows", lambda *args: reads.append(args) or original(*args))
    weights = open_weights_file(folder)
    assert reads == [] and weights.format == "shards" and len(weights.files) == 3
    assert "sharded checkpoint" in weights.description and "(3 files)" in weights.description
    names = [layer.name for layer in weights.layers]
    for projection in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        assert f"model.layers.1.{projection}" in names
    assert names.index("model.layers.0.mlp.up_proj") < names.index("model.layers.1.mlp.up_proj")
    skipped = dict(weights.skipped)
    assert "norm's weight" in skipped["model.layers.0.input_layernorm.weight"]
    head = weights.layer("lm_head")  # tied: listed once, with a note; the other name skipped, saying so
    assert head.tied == ("model.embed_tokens.weight",) and "tied: also model.embed_tokens.weight" in head.note
    assert skipped["model.embed_tokens.weight"].startswith("the same values as 'lm_head.weight'")
    up = weights.weight_vectors("model.layers.1.mlp.up_proj")  # bf16
    down = weights.weight_vectors("model.layers.0.mlp.down_proj")  # fp16
    assert up.dtype == down.dtype == torch.float32
    assert torch.equal(up, state["model.layers.1.mlp.up_proj.weight"].float())
    assert torch.equal(down, state["model.layers.0.mlp.down_proj.weight"].float())
    assert [args[3] for args in reads] == [(160, 64), (64, 160)]  # one read each, of that layer's shape
    rows = weights.weight("model.layers.1.mlp.up_proj", (10, 20))
    assert torch.equal(rows, up[10:20]) and reads[-1][4] == (10, 20)  # only those rows' bytes
    by_index = open_weights_file(folder / "model.safetensors.index.json")
    assert [layer.name for layer in by_index.layers] == names


def test_an_index_that_names_files_outside_its_folder_or_missing_tensors_is_refused(checkpoint, tmp_path):
    folder, _ = checkpoint
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    for shard, message in (("../model-00001-of-00003.safetensors", "climbs out"),
                           ("/etc/passwd", "absolute path"), ("nowhere.safetensors", "missing")):
        forged = dict(index, weight_map={**index["weight_map"], "model.norm.weight": shard})
        path = tmp_path / "forged.safetensors.index.json"
        for name in {*index["weight_map"].values()}:
            (tmp_path / name).write_bytes((folder / name).read_bytes())
        path.write_text(json.dumps(forged))
        with pytest.raises(WeightsFileError, match=message):
            open_weights_file(path)
    incomplete = dict(index, weight_map={**index["weight_map"], "model.extra.weight": "model-00001-of-00003.safetensors"})
    path.write_text(json.dumps(incomplete))
    with pytest.raises(WeightsFileError, match="names tensor 'model.extra.weight' in model-00001.*does not hold it"):
        open_weights_file(path)


def test_a_shard_linked_outside_its_folder_is_refused(checkpoint, tmp_path):
    folder, _ = checkpoint
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in folder.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    outside = tmp_path / "elsewhere.safetensors"
    (copy / "model-00002-of-00003.safetensors").rename(outside)
    (copy / "model-00002-of-00003.safetensors").symlink_to(outside)
    with pytest.raises(WeightsFileError, match="a link that leads outside its folder"):
        open_weights_file(copy)


def test_a_folder_of_safetensors_files_is_one_model(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    save_safetensors({"encoder.fc.weight": torch.randn(6, 4), "shared.weight": torch.randn(3, 3)}, folder / "a.safetensors")
    save_safetensors({"decoder.fc.weight": torch.randn(5, 4), "shared.weight": torch.randn(3, 3)}, folder / "b.safetensors")
    weights = open_weights_file(folder)
    assert weights.format == "folder" and [layer.name for layer in weights.layers] == ["decoder.fc", "encoder.fc", "shared"]
    assert dict(weights.skipped)["shared.weight"] == "also in b.safetensors: the one in a.safetensors is read"
    (folder / "a.safetensors").unlink()
    (folder / "b.safetensors").unlink()
    (folder / "one.onnx").write_bytes(b"")
    (folder / "two.pt").write_bytes(b"")
    with pytest.raises(WeightsFileError, match="holds several weights files .*open one of them"):
        open_weights_file(folder)


# --- model files as they come: ONNX external data, Constant nodes and subgraphs, TorchScript, legacy torch ----

def onnx_with_external_data(folder, location: str = "weights.data") -> tuple:
    """A two-layer ONNX model (Gemm, MatMul) saved with its weights in ``location`` beside it; and the weights."""
    fc, proj = torch.randn(6, 4), torch.randn(4, 5)  # proj stored inputs x outputs (MatMul)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gemm", ["x", "fc.weight"], ["h"], transB=1),
         onnx.helper.make_node("MatMul", ["h", "proj"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 4))],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (1, 5))],
        [onnx.numpy_helper.from_array(fc.numpy(), "fc.weight"), onnx.numpy_helper.from_array(proj.numpy(), "proj")])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx.helper.make_model(graph), str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / "model.onnx", fc, proj


def point_external_data(path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        next(entry for entry in tensor.external_data if entry.key == "location").value = location
    path.write_bytes(model.SerializeToString())


def test_onnx_external_data_is_read_inside_the_models_folder_only(tmp_path):
    path, fc, proj = onnx_with_external_data(tmp_path / "model")
    weights = open_weights_file(path, LOCAL_BUDGET)
    assert torch.equal(weights.weight("fc"), fc) and torch.equal(weights.weight("proj"), proj.T)
    assert weights.layer("proj").transposed
    assert [layer.name for layer in open_weights_file(tmp_path / "model", LOCAL_BUDGET).layers] == ["fc", "proj"]
    with pytest.raises(WeightsFileError, match="in another file .*not read here .*an upload is one file"):
        open_weights_file(path)  # the default budget: an upload's
    secret = tmp_path / "secret.bin"
    secret.write_bytes((tmp_path / "model" / "weights.data").read_bytes())
    (tmp_path / "model" / "link.data").symlink_to(secret)
    for location, message in ((str(secret), "absolute path"), ("../secret.bin", "climbs out with '..'"),
                              ("link.data", "a link that leads outside its folder")):
        point_external_data(path, location)
        with pytest.raises(WeightsFileError, match=message):
            open_weights_file(path, LOCAL_BUDGET)


def test_onnx_weights_in_constant_nodes_and_if_branches_are_read_or_named_with_why_not(tmp_path):
    conv = torch.randn(8, 3, 3, 3)
    then_w, else_w = torch.randn(4, 8), torch.randn(8, 5)
    constant = onnx.helper.make_node("Constant", [], ["conv_w"], name="weights",
                                     value=onnx.numpy_helper.from_array(conv.numpy(), "ignored"))
    then_graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gemm", ["p", "then_w"], ["out"], transB=1)], "then",
        [], [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(then_w.numpy(), "then_w")])
    else_graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Constant", [], ["else_w"], value=onnx.numpy_helper.from_array(else_w.numpy())),
         onnx.helper.make_node("Constant", [], ["sparse_w"], sparse_value=onnx.helper.make_sparse_tensor(
             onnx.numpy_helper.from_array(np.ones(2, np.float32), "v"),
             onnx.numpy_helper.from_array(np.array([0, 3], np.int64), "i"), [2, 2])),
         onnx.helper.make_node("MatMul", ["p", "else_w"], ["out"])], "else",
        [], [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)])
    graph = onnx.helper.make_graph(
        [constant, onnx.helper.make_node("Conv", ["x", "conv_w"], ["c"]),
         onnx.helper.make_node("ReduceMean", ["c"], ["p"], keepdims=0),
         onnx.helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_graph, else_branch=else_graph)],
        "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 3, 8, 8)),
              onnx.helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, ())],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = tmp_path / "constants.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    weights = open_weights_file(path)
    assert {layer.name: layer.shape for layer in weights.layers} == {"conv_w": (8, 3, 3, 3), "then_w": (4, 8),
                                                                      "else_w": (5, 8)}
    assert torch.equal(weights.weight("conv_w"), conv) and torch.equal(weights.weight("then_w"), then_w)
    assert torch.equal(weights.weight("else_w"), else_w.T)  # MatMul inside the else branch: turned round
    assert "Constant node 'weights'" in weights.layer("conv_w").note
    assert "If node 'branch' (else_branch)" in weights.layer("else_w").note
    assert "sparse tensors are not read" in dict(weights.skipped)["sparse_w"]


class Shapes(nn.Module):
    """Conv1d, a grouped ConvTranspose2d and an LSTM: rank-3 weights, output channels as neurons, gates."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(3, 5, 3)
        self.up = nn.ConvTranspose2d(4, 6, 3, groups=2)
        self.lstm = nn.LSTM(5, 7, batch_first=True)

    def forward(self, signal, image):
        sequence, _ = self.lstm(self.conv1d(signal).transpose(1, 2))
        return sequence.sum() + self.up(image).sum()


def transposed_conv_neurons(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A ConvTranspose weight (in, out/groups, kh, kw) as output channels x (in/groups, kh, kw), by hand."""
    per_group = weight.shape[0] // groups
    return torch.cat([weight[g * per_group:(g + 1) * per_group].transpose(0, 1) for g in range(groups)])


def test_onnx_conv1d_conv_transpose_and_lstm_weights_are_layers_with_output_channels_first(tmp_path):
    model = Shapes().eval()
    path = tmp_path / "shapes.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, 10), torch.zeros(1, 4, 5, 5)), str(path), dynamo=False)
    weights = open_weights_file(path)
    kinds = {layer.name: (layer.kind, layer.shape) for layer in weights.layers}
    assert kinds["conv1d"] == ("Conv1d-like (rank 3)", (5, 3, 3))
    assert kinds["up"] == ("ConvTranspose2d-like (rank 4)", (6, 2, 3, 3))
    assert torch.equal(weights.weight("up"), transposed_conv_neurons(model.up.weight.detach(), 2))
    gates = sorted(shape for kind, shape in kinds.values() if kind == "recurrent (rank 3)")
    assert gates == [(28, 5), (28, 7)]  # W and R: 4 gates x 7 hidden units, one direction
    assert all(why.startswith("the bias of") for name, why in weights.skipped if name in ("conv1d.bias", "up.bias"))


def test_state_dict_shapes_conv1d_conv_transpose_by_name_and_biases_are_told_apart(tmp_path):
    deconv = torch.randn(4, 6, 3, 3)
    state = {"enc.conv1d.weight": torch.randn(5, 3, 3), "dec.conv_transpose.weight": deconv,
             "dec.up.weight": torch.randn(4, 6, 3, 3), "bias4d": torch.randn(1, 8, 1, 1), "bias2d": torch.randn(1, 1024),
             "bias1d": torch.randn(8), "one_input.weight": torch.randn(16384, 1, dtype=torch.float16)}
    torch.save(state, tmp_path / "shapes.pt")
    weights = open_weights_file(tmp_path / "shapes.pt")
    kinds = {layer.name: (layer.kind, layer.shape) for layer in weights.layers}
    assert kinds == {"enc.conv1d": ("Conv1d-like (rank 3)", (5, 3, 3)),
                     "dec.conv_transpose": ("ConvTranspose2d-like (rank 4)", (6, 4, 3, 3)),
                     "dec.up": ("Conv2d-like (rank 4)", (4, 6, 3, 3))}  # no name hint: read as stored
    assert torch.equal(weights.weight("dec.conv_transpose"), deconv.transpose(0, 1))
    skipped = dict(weights.skipped)
    for name in ("bias4d", "bias2d", "bias1d", "one_input.weight"):
        assert "one value per channel" in skipped[name], name


def test_torchscript_is_told_how_to_save_a_state_dict_and_its_code_never_runs(tmp_path, monkeypatch):
    torch.jit.save(torch.jit.script(nn.Linear(3, 2)), tmp_path / "model.jit")
    monkeypatch.setattr(torch.jit, "load", lambda *args, **kwargs: pytest.fail("TorchScript was loaded"))
    for name in ("model.jit", "model.pt"):
        (tmp_path / name).write_bytes((tmp_path / "model.jit").read_bytes())
        with pytest.raises(WeightsFileError, match=r"is a TorchScript program .*torch\.save\(torch\.jit\.load\(path\)"
                                                   r"\.state_dict\(\)"):
            open_weights_file(tmp_path / name)


def test_a_legacy_torch_file_is_read_with_weights_only_once_its_declared_sizes_fit(tmp_path):
    state = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.zeros(4)}
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    weights = open_weights_file(legacy)
    assert [layer.name for layer in weights.layers] == ["fc"] and torch.equal(weights.weight("fc"), state["fc.weight"])
    data = legacy.read_bytes()
    assert data.count(b"K\x0cNt") == 1  # the weight's storage: BININT1 12 (elements), None, TUPLE
    forged = tmp_path / "forged.pt"
    forged.write_bytes(data.replace(b"K\x0cNt", b"K\xffNt"))  # 255 float32 elements: more than the file holds
    with pytest.raises(WeightsFileError, match="declares .* bytes of storages but holds"):
        open_weights_file(forged)


def test_model_roots_must_be_absolute_folders_and_offer_only_models_inside(tmp_path, monkeypatch):
    from cprune_core.weights import find_models
    from cprune_server.settings import check_server_settings

    for value in ("models", "/srv/models:relative"):
        monkeypatch.setenv("CPRUNE_MODEL_ROOTS", value)
        with pytest.raises(ConfigError, match="CPRUNE_MODEL_ROOTS must list absolute folder paths"):
            check_server_settings()
    root, outside = tmp_path / "models", tmp_path / "private"
    hugging_face_checkpoint(root / "lab" / "llama", llama_like(1, 8, 16, 10, torch.float16), shards=2)
    (root / "onnx").mkdir()
    for name in ("a.onnx", "b.pt", "notes.txt"):
        (root / "onnx" / name).write_bytes(b"")
    save_safetensors({"w": torch.ones(2, 2)}, (outside / "secret").mkdir(parents=True) or outside / "secret" / "s.safetensors")
    (root / "lab" / "escape").symlink_to(outside / "secret")  # a link to a folder outside: never walked
    (root / "onnx" / "linked.pt").symlink_to(outside / "secret" / "s.safetensors")  # to a file outside: left out
    models = find_models((root.resolve(),))
    assert [label for label, _ in models] == ["models/lab/llama", "models/onnx/a.onnx", "models/onnx/b.pt"]
    assert models[0][1] == (root / "lab" / "llama").resolve()
    assert [layer.name for layer in open_weights_file(models[0][1], LOCAL_BUDGET).layers][:1] == [
        "model.embed_tokens"]
