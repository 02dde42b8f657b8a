import pytest
import torch

from cprune_core.registry import load_backbone


@pytest.fixture(scope="session")
def lite0():
    """The offline default with its real packaged ImageNet weights."""
    return load_backbone("efficientnet_lite0")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
