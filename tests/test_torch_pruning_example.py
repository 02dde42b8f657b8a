"""The Torch-Pruning examples people copy: the README's section, run as written, and the docstring examples of
the public names it uses (GroupImportance, make_criterion) and of the weights-file readers."""
from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import cprune_core.criteria
import cprune_core.registry
import cprune_core.weights.budget
import cprune_core.weights.file

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_prunes_a_network_of_its_own_and_mobilenet_v3_small(capsys):
    code = readme_block("## Torch-Pruning users")
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # its own asserts check the coupling
    printed = capsys.readouterr().out
    assert printed.startswith("mobilenet_v3_small: 2,542,856 -> ") and "parameters" in printed
    assert printed.strip() in README.read_text()  # the figures the README quotes are what it prints
    assert namespace["net"].head.in_features == 8


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
