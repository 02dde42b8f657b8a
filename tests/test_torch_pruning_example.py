"""The Torch-Pruning examples people copy: the README's minimal one and the full one of docs/torch-pruning.md, run
as written, and the docstring examples of the public names they use (GroupImportance, make_criterion) and of the
weights-file readers."""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import cprune_core.criteria
import cprune_core.registry
import cprune_core.weights.budget
import cprune_core.weights.file

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "torch-pruning.md"


def python_block(path: Path, heading: str) -> str:
    """The first ```python block after ``heading`` in ``path``."""
    text = path.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def run_example(path: Path, heading: str, capsys) -> tuple[dict, str]:
    """Run the example under ``heading`` of ``path``; returns its namespace and what it printed."""
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(python_block(path, heading), str(path), "exec"), namespace)  # its own asserts check the coupling
    return namespace, capsys.readouterr().out


def test_the_guide_prunes_a_network_of_its_own_and_mobilenet_v3_small(capsys):
    namespace, printed = run_example(GUIDE, "## A full example", capsys)
    assert printed.startswith("mobilenet_v3_small: 2,542,856 -> ") and "parameters" in printed
    assert f"It prints `{printed.strip()}`" in GUIDE.read_text()  # the figures the guide quotes are what it prints
    assert namespace["net"].head.in_features == 8


def test_the_readme_prunes_efficientnet_lite0_with_real_weights(capsys):
    namespace, printed = run_example(README, "## Prune your own model with Torch-Pruning", capsys)
    assert printed.startswith("efficientnet_lite0: 4,652,008 -> ") and "parameters" in printed
    assert f"It prints `{printed.strip()}`" in README.read_text()  # the figures the README quotes are what it prints
    assert namespace["model"].classifier.out_features == 1000


@pytest.mark.parametrize("module, names", [
    (cprune_core.criteria, {"GroupImportance", "make_criterion"}),
    (cprune_core.weights.file, {"open_weights_file"}),
    (cprune_core.weights.budget, {"check_stored_tensors"}),
    (cprune_core.registry, {"backbones_fitting"}),
])
def test_docstring_examples_run_as_written(module, names):
    finder = doctest.DocTestFinder()
    tests = [test for test in finder.find(module) if test.name.rsplit(".", 1)[-1] in names and test.examples]
    assert {test.name.rsplit(".", 1)[-1] for test in tests} == names
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
