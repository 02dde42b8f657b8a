"""Tests for cprune_core.lazy: a package's names imported when first used, and the light modules it makes possible."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import pytest

from cprune_core import criteria, ranges


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``lazypkg`` whose ``heavy`` submodule counts its imports and exports two names."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text("from cprune_core.lazy import attach\n"
                                      "__getattr__, __dir__, __all__ = attach(__name__, {'heavy': ('Model', 'VALUE')})\n")
    (root / "heavy.py").write_text("import builtins\nbuiltins.heavy_imports = getattr(builtins, 'heavy_imports', 0) + 1\n"
                                   "class Model: pass\nVALUE = 42\n")
    (root / "other.py").write_text("NAME = 'other'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    monkeypatch.setattr(builtins, "heavy_imports", 0, raising=False)
    yield __import__("lazypkg")
    for name in [name for name in sys.modules if name.split(".")[0] == "lazypkg"]:
        del sys.modules[name]


def test_a_name_is_imported_on_first_use_once(package):
    import builtins

    assert builtins.heavy_imports == 0 and "lazypkg.heavy" not in sys.modules
    assert package.VALUE == 42 and builtins.heavy_imports == 1
    from lazypkg import Model

    assert Model is package.Model and builtins.heavy_imports == 1
    assert package.__all__ == ["Model", "VALUE"] and {"Model", "VALUE"} <= set(dir(package))


def test_a_submodule_not_exported_is_still_reachable_and_a_missing_name_is_an_attribute_error(package):
    assert isinstance(package.other, types.ModuleType) and package.other.NAME == "other"
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        assert package.missing is None  # never reached: the attribute does not exist
    with pytest.raises(ImportError):
        from lazypkg import missing  # noqa: F401


def test_an_import_error_inside_the_submodule_is_raised_as_it_is(package, tmp_path):
    (tmp_path / "lazypkg" / "heavy.py").write_text("import a_module_nobody_has\n")
    with pytest.raises(ModuleNotFoundError, match="a_module_nobody_has"):
        assert package.Model is None  # never reached: the import fails


def test_the_criteria_names_are_the_registrys_keys_in_its_order():
    """ranges.CRITERION_NAMES (what the settings offer, without torch) and criteria.CRITERIA (the classes)."""
    assert tuple(criteria.CRITERIA) == ranges.CRITERION_NAMES
    assert criteria.DEFAULT_TAU == ranges.DEFAULT_TAU and ranges.DEFAULT_TAU in ranges.TAU


def test_the_settings_classes_and_registries_import_no_torch():
    """What the command line's parsers and the app's forms read: the settings, the names to choose among."""
    probe = ("import json, sys\n"
             "from cprune_core.schema import FinetuneConfig\nfrom cprune_core.atlas.settings import AtlasSettings\n"
             "from cprune_core.ablation.config import AnalysisConfig\nfrom cprune_core.experiment.settings import REGIMES\n"
             "from cprune_core.registry import BACKBONES\nfrom cprune_core.data import DATASETS\n"
             "from cprune_core.weights.budget import LOCAL_BUDGET\nFinetuneConfig().validate()\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'torchvision', 'pandas', 'scipy', 'networkx', 'ray'})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize("package", ["cprune_core", "cprune_core.data", "cprune_core.ablation", "cprune_core.atlas",
                                     "cprune_core.experiment", "cprune_core.weights"])
def test_every_name_a_package_exports_lazily_is_there(package):
    """A name listed for attach but missing from its submodule would fail only when first used: each resolves."""
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert module.__all__ and missing == []
