"""The line between the library and the app: ``cprune_core`` imports neither Streamlit nor the app's packages
(``cprune_server``, ``ui``), and ``cprune_server`` (the app's server side) does not import Streamlit."""
from __future__ import annotations

import ast
import json
import os
import re
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


# --- docs/architecture.md's table of every module's imports, against the code -----------------------------------

PACKAGES = ("cprune_server", "ui", "pages")


def _unit(path: Path) -> str:
    """A row of the table: a core module (``graph.py``), a core package (``atlas/``), or an app-side folder."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "cprune_core":
        return f"{parts[1]}/" if len(parts) > 2 else parts[1]
    return f"{parts[0]}/" if parts[0] in PACKAGES else parts[0]


def _targets(node: ast.ImportFrom | ast.Import, path: Path) -> set[str]:
    """The rows ``node`` imports: a relative import resolved against ``path``'s package."""
    if isinstance(node, ast.Import):
        modules = [(alias.name.split("."), []) for alias in node.names]
    else:
        base = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
        base = base[:len(base) - node.level + 1] if node.level else []
        modules = [(base + (node.module.split(".") if node.module else []), [alias.name for alias in node.names])]
    found = set()
    for parts, names in modules:
        if parts[0] in PACKAGES:
            found.add(f"{parts[0]}/")
        elif parts[0] == "cprune_core" and len(parts) > 1:
            found.add(f"{parts[1]}/" if (ROOT / "cprune_core" / parts[1]).is_dir() else f"{parts[1]}.py")
        elif parts == ["cprune_core"]:
            for name in names:
                if (ROOT / "cprune_core" / f"{name}.py").exists():
                    found.add(f"{name}.py")
                else:
                    found.add(f"{name}/" if (ROOT / "cprune_core" / name).is_dir() else "cprune_core's public names")
    return found


def code_imports() -> dict[str, set[str]]:
    files = [*(ROOT / "cprune_core").rglob("*.py"), *(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")),
             ROOT / "app.py"]
    rows: dict[str, set[str]] = {}
    for path in files:
        found = rows.setdefault(_unit(path), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found |= _targets(node, path)
    return {unit: imports - {unit} for unit, imports in rows.items()}


def documented_imports() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text().split("### Every module's imports", 1)[1]
    table = text[text.index("\n| module | imports |"):].strip().split("\n\n", 1)[0]  # the first table only
    rows = {}
    for line in table.splitlines()[2:]:
        module, imports = line.strip().strip("|").split(" | ")
        named = re.sub(r"\([^)]*\)", "", imports)  # a note in brackets names no import
        rows[module.strip("` ")] = set(re.findall(r"`([^`]+)`", named)) | (
            {"cprune_core's public names"} if "cprune_core's public names" in named else set())
    return rows


def test_the_architecture_guide_names_every_modules_imports_as_the_code_has_them():
    assert documented_imports() == code_imports()
