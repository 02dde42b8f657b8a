"""The line between the library and the app: ``cprune_core`` imports neither Streamlit nor the app's packages
(``cprune_server``, ``ui``), and ``cprune_server`` (the app's server side) does not import Streamlit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_SIDE = ("streamlit", "cprune_server", "ui", "pages")

# Imports every module of a package but its __main__ (each by name, so a module no __init__ imports is imported
# too) and prints how many, and which of APP_SIDE ended up in sys.modules.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [module.name for module in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
         if not module.name.endswith(".__main__")]  # __main__ runs the command line
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": len(names), "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))}))
"""


def imported_by(package: str) -> dict:
    shown = subprocess.run([sys.executable, "-c", IMPORT_ALL, package, *APP_SIDE], cwd=ROOT, capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(shown.stdout.strip().splitlines()[-1])


def test_the_core_imports_nothing_of_the_app():
    found = imported_by("cprune_core")
    assert found["modules"] > 50  # every module was imported, not only the package
    assert found["loaded"] == []


def test_the_server_side_does_not_import_streamlit():
    found = imported_by("cprune_server")
    assert found["modules"] >= 6
    assert found["loaded"] == ["cprune_server"]
