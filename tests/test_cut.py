"""Tests for cprune_core.cut: prefix then suffix compute exactly the model, at any cut point."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cprune_core.cut import cut_model
from cprune_core.registry import load_backbone


def assert_exact_cut(model, spec, size: int = 64) -> tuple[torch.nn.Sequential, torch.nn.Sequential]:
    prefix, suffix = cut_model(model.eval(), spec)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(suffix(prefix(x)), model(x))
    return prefix, suffix


def test_lite0_cut_at_its_registry_point_shares_the_models_modules(lite0):
    prefix, suffix = assert_exact_cut(lite0.model, lite0.spec)
    head = lite0.model.get_submodule(lite0.spec.suffix_start)
    assert suffix[0] is head  # the same module, not a copy: training the suffix trains the model
    assert not any(module is head for module in prefix.modules())
    ids = {id(p) for p in prefix.parameters()} | {id(p) for p in suffix.parameters()}
    assert ids == {id(p) for p in lite0.model.parameters()}  # every parameter on exactly one side


@pytest.mark.parametrize("cut", ["blocks.15", "head.2", "stem"])
def test_a_cut_inside_nested_containers_is_exact(lite0, cut):
    prefix, suffix = assert_exact_cut(lite0.model, replace(lite0.spec, suffix_start=cut))
    assert any(module is lite0.model.get_submodule(cut) for module in suffix)


def test_a_torchvision_model_is_flattened_where_its_forward_flattens():
    resnet = load_backbone("resnet18", "random")  # no download: random init
    prefix, suffix = assert_exact_cut(resnet.model, resnet.spec)
    assert isinstance(suffix[-2], torch.nn.Flatten) and suffix[-1] is resnet.model.fc


def test_a_cut_point_the_model_does_not_have_is_a_key_error(lite0):
    with pytest.raises(KeyError, match="No module 'blocks.nope'"):
        cut_model(lite0.model, replace(lite0.spec, suffix_start="blocks.nope"))
