import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cprune_core.registry import load_backbone  # noqa: E402


@pytest.fixture(scope="session")
def lite0():
    """The offline default with its real packaged ImageNet weights."""
    return load_backbone("efficientnet_lite0")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
