import pytest
import torch

from cprune_core import pruning
from cprune_core.centrality import eigenvector_centrality
from cprune_core.errors import ConfigError
from cprune_core.graph import adjacency_for
from cprune_core.criteria import make_criterion
from cprune_core.pruning import list_layers
from cprune_core.pruning import PruningGraph, apply_kept, keep_count, prune_model
from cprune_core.registry import BACKBONES, load_backbone


def test_keep_count_bounds():
    assert keep_count(1280, 0.5) == 640
    assert keep_count(10, 0.01) == 1
    assert keep_count(3, 1.0) == 3
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        keep_count(10, 0.0)


def test_layer_table_of_the_offline_default(lite0):
    layers = {row.name: row for row in list_layers(lite0.model, PruningGraph(lite0.model, lite0.spec))}
    head = layers["head.1"]
    assert (head.kind, head.neurons, head.vector_length, head.params, head.prunable) == ("Conv2d", 1280, 320, 409600, True)
    assert not layers["classifier"].prunable and "classifier" in layers["classifier"].note
    depthwise = layers["blocks.15.depthwise.1"]
    assert depthwise.kind == "Conv2d (depthwise)" and not depthwise.prunable
    assert "blocks.15.expand.1" in depthwise.note
    assert "residual" in layers["blocks.13.project.1"].note


def test_one_layer_keeps_exactly_the_most_central_neurons(lite0):
    head = lite0.model.get_submodule("head.1")
    centrality = eigenvector_centrality(adjacency_for(head, 0.1)).scores
    expected = sorted(torch.argsort(centrality, descending=True)[:640].tolist())
    result = prune_model(lite0.model, lite0.spec, make_criterion("eigenvector", 0.1), 0.5, ["head.1"])
    assert result.kept["head.1"] == expected and result.channels["head.1"] == 1280
    pruned_head = result.model.get_submodule("head.1")
    assert pruned_head.out_channels == 640
    assert torch.equal(pruned_head.weight, head.weight[expected])
    assert result.model.get_submodule("head.2").num_features == 640
    assert result.model.classifier.in_features == 640
    assert lite0.model.get_submodule("head.1").out_channels == 1280  # the original is untouched
    with torch.no_grad():
        assert result.model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "vgg16" else name
                                  for name in sorted(BACKBONES)])  # VGG16: 138 M parameters
def test_all_layers_prune_and_still_run(name):
    backbone = load_backbone(name, "pretrained" if name == "efficientnet_lite0" else "random")
    before = sum(p.numel() for p in backbone.model.parameters())
    result = prune_model(backbone.model, backbone.spec, make_criterion("l2"), 0.5)
    after = sum(p.numel() for p in result.model.parameters())
    assert after < 0.4 * before
    for layer, kept in result.kept.items():
        assert len(kept) == keep_count(result.channels[layer], 0.5)
        assert result.model.get_submodule(layer).weight.shape[0] == len(kept)
    with torch.no_grad():
        out = result.model(torch.randn(1, 3, backbone.spec.input_size, backbone.spec.input_size))
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "vgg16" else name
                                  for name in sorted(BACKBONES)])
def test_the_groups_traced_at_the_small_trace_size_are_those_at_the_input_size(name, monkeypatch):
    backbone = load_backbone(name, "random")
    small = PruningGraph(backbone.model, backbone.spec)
    monkeypatch.setattr(pruning, "TRACE_SIZE", backbone.spec.input_size)
    full = PruningGraph(backbone.model, backbone.spec)
    assert [vars(g) for g in small.groups] == [vars(g) for g in full.groups]


def test_residual_groups_keep_the_same_channels():
    backbone = load_backbone("resnet18", "random")
    result = prune_model(backbone.model, backbone.spec, make_criterion("eigenvector", 0.0), 0.25, ["layer4.0.conv2"])
    coupled = ["layer4.0.conv2", "layer4.0.downsample.0", "layer4.1.conv2"]
    assert all(result.kept[name] == result.kept["layer4.0.conv2"] for name in coupled)
    assert result.model.fc.in_features == 128


def test_saved_indices_rebuild_the_same_model(lite0):
    result = prune_model(lite0.model, lite0.spec, make_criterion("fpgm"), 0.3)
    rebuilt = apply_kept(load_backbone("efficientnet_lite0").model, lite0.spec, result.kept)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), result.model(x), atol=1e-5)


def test_unprunable_layers_are_refused(lite0):
    with pytest.raises(ConfigError, match="cannot be pruned"):
        prune_model(lite0.model, lite0.spec, make_criterion("l1"), 0.5, ["classifier"])
    with pytest.raises(ValueError, match="between 1 and 1280"):
        prune_model(lite0.model, lite0.spec, make_criterion("l1"), {"head.1": 0})
