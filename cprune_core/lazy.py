"""A package's names imported when first used (PEP 562), as scientific Python's ``lazy_loader.attach``.

A package whose modules import torch, pandas or scipy lists its exports here instead of importing them: importing
the package, or one light module in it (a settings class, a registry of names), then costs none of those, so
``cprune --help`` and the settings classes answer at once. ``from package import name`` works as before.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, exports: Mapping[str, tuple[str, ...]]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` (its ``__name__``), whose submodule ``module``
    exports the names ``exports[module]``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to tuple of str
        Submodule name (relative, without the dot) -> the names it exports through the package.

    Returns
    -------
    (__getattr__, __dir__, __all__)
        ``__getattr__(name)`` imports the submodule exporting ``name`` and returns the name (then cached in the
        package's namespace); a name no submodule exports but that is a submodule returns that submodule; any other
        name raises AttributeError, as a module does. An ImportError inside a submodule is raised as it is.

    Example
    -------
    In ``mypackage/__init__.py``::

        __getattr__, __dir__, __all__ = attach(__name__, {"heavy": ("Model", "train")})
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    names = list(module_of)

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as missing:
                if missing.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(names))

    return __getattr__, __dir__, names
