"""Studies of one paper each (not the generic framework). A study is a package
``bench/studies/<name>/``; the CLI finds every one here (pkgutil, no list of names) and
asks its ``__init__`` for two optional hooks:

* ``register_commands(subparsers)``: add the study's ``python -m bench`` sub-commands,
  each parser with ``set_defaults(handler=fn)``, ``fn(args)`` returning the exit code.
  The parser is built for every command (``--help`` and dry runs too): the hook and the
  package's ``__init__`` import nothing heavy; ``fn`` imports the study's code when it runs.
* ``register_published()``: register the paper's printed tables with
  :mod:`bench.report.published` (``bench table --reference NAME``); called only when a
  reference is asked for.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def studies() -> list[ModuleType]:
    """Every study package, imported (its ``__init__`` only), in name order."""
    return [
        importlib.import_module(found.name)
        for found in pkgutil.iter_modules(__path__, f"{__name__}.")
        if found.ispkg
    ]


def register_commands(subparsers) -> None:
    """Every study's sub-commands, added to ``subparsers``."""
    for study in studies():
        hook = getattr(study, "register_commands", None)
        if hook is not None:
            hook(subparsers)


def register_published() -> None:
    """Every study's printed tables, registered with :mod:`bench.report.published`."""
    for study in studies():
        hook = getattr(study, "register_published", None)
        if hook is not None:
            hook()
