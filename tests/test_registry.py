import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

from cprune_core.errors import CheckpointError, WeightsUnavailableError
from cprune_core.registry import BACKBONES, load_backbone, read_state_dict, weights_cache_path

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504


def classify(backbone, image: np.ndarray) -> torch.Tensor:
    spec = backbone.spec
    pil = Image.fromarray(image).resize((spec.input_size, spec.input_size), Image.BILINEAR)
    x = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    with torch.no_grad():
        return backbone.model(x[None]).softmax(1)[0]


def test_offline_weights_are_really_pretrained(lite0):
    assert lite0.weights_status == "pretrained"
    cat = classify(lite0, data.chelsea())
    assert int(cat.argmax()) in IMAGENET_CATS
    assert float(cat[list(IMAGENET_CATS)].sum()) > 0.8
    coffee = classify(lite0, data.coffee())
    assert int(coffee.argmax()) in (ESPRESSO, CUP, COFFEE_MUG)
    assert float(coffee[ESPRESSO]) > 0.5


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_larger_lite_models_have_their_packaged_imagenet_weights(name):
    backbone = load_backbone(name)
    assert backbone.spec.offline and backbone.weights_status == "pretrained"
    cat = classify(backbone, data.chelsea())
    assert int(cat.argmax()) in IMAGENET_CATS and float(cat[list(IMAGENET_CATS)].sum()) > 0.7
    assert int(classify(backbone, data.coffee()).argmax()) in (ESPRESSO, CUP, COFFEE_MUG)


def test_random_init_is_labelled_and_not_pretrained(lite0):
    random = load_backbone("efficientnet_lite0", "random")
    assert random.weights_status == "random init" and not random.pretrained
    assert not torch.equal(random.model.head[1].weight, lite0.model.head[1].weight)


def test_offline_torchvision_weights_give_actionable_message(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "checkpoints" in message
    assert "random init" in message and "URLError" in message


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cached_torchvision_weights_are_read_as_weights_only(monkeypatch, tmp_path):
    """torch.hub checks a file's hash only when it downloads it: a file already in the cache is read as
    it is, so it is read as tensors only (a pickle that would run code is refused, and runs nothing)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = weights_cache_path(BACKBONES["resnet18"])
    assert cached.is_relative_to(tmp_path)
    cached.parent.mkdir(parents=True)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, cached)
    loaded = load_backbone("resnet18")
    assert loaded.pretrained and torch.equal(loaded.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])

    marker = tmp_path / "code-ran"
    torch.save({"fc.weight": _RunsCodeWhenUnpickled(marker)}, cached)
    with pytest.raises(WeightsUnavailableError, match="resnet18"):
        load_backbone("resnet18")
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_runs(name):
    backbone = load_backbone(name, "random")
    size = backbone.spec.input_size
    with torch.no_grad():
        out = backbone.model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000)
    backbone.model.get_submodule(backbone.spec.head_layer)
    assert isinstance(backbone.model.get_submodule(backbone.spec.classifier), torch.nn.Linear)


def test_user_checkpoint_roundtrip_and_new_head(tmp_path):
    source = load_backbone("resnet18", "random").model
    source.fc = torch.nn.Linear(512, 7)
    path = tmp_path / "mine.pt"
    torch.save(source.state_dict(), path)
    loaded = load_backbone("resnet18", "checkpoint", path)
    assert loaded.weights_status == "checkpoint: mine.pt"
    assert loaded.model.fc.out_features == 7
    assert torch.equal(loaded.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_wrong_architecture_names_mismatched_keys(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(load_backbone("resnet18", "random").model.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_backbone("efficientnet_lite0", "checkpoint", path)
    message = str(info.value)
    assert "missing keys: blocks.0.depthwise.1.weight" in message and "unexpected keys: bn1." in message
    assert "more" in message  # long lists are shortened, not dumped


def test_corrupt_oversized_and_non_state_dict_checkpoints(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="torch.save"):
        read_state_dict(corrupt)
    big = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(1000)}, big)
    with pytest.raises(CheckpointError, match="limit"):
        read_state_dict(big, max_bytes=100)
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(listing)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")
