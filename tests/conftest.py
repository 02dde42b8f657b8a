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


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    """A fresh CPRUNE_HOME (run store, uploads, saved models) for a module of app tests, restored afterwards:
    their runs never go to the user's store. Use with ``pytestmark = pytest.mark.usefixtures("app_home")``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CPRUNE_HOME", str(tmp_path_factory.mktemp("cprune-home")))
        yield
