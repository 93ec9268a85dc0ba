"""Method plugins: one file per method, each registered by name with ``@register``.

Importing this package imports every module in it, so adding a method is adding a file. The
contract (``Method``, ``Batch``, ``MethodContext``, ``register``) is :mod:`bench.core.method`;
it is re-exported here for plugins.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.core.method import (
    METHODS,
    Batch,
    Method,
    MethodContext,
    NoParams,
    Term,
    Weight,
    register,
)

_NOT_PLUGINS = {"losses", "common_space", "amalgamation", "readings"}  # shared code

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_PLUGINS and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "MethodContext",
    "NoParams",
    "Term",
    "Weight",
    "register",
]
