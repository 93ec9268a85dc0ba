"""The launcher registry: how a suite's runs get executed, by name (``--launcher NAME``).

A launcher is a generator ``launcher(runs, options, slots)`` that yields ``(run, record)``
as runs complete, registered with ``@launcher("name")`` in any module of
:mod:`bench.launch`: :func:`load_launchers` imports every module of the package (pkgutil)
the first time a name is asked for, so a new launcher is one new module there, with no
edit to this registry, to :mod:`bench.launch.local` (serial, process, ray) or to the CLI
(its ``--launcher`` choices are :func:`launcher_names`)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bench.core.config import check_gpus_per_run
from bench.core.record import RunRecord
from bench.core.specs import PlannedRun
from bench.engine.options import ExecOptions


@dataclass(frozen=True)
class Slots:
    """How many runs go at once: ``workers`` processes (process launcher); on Ray,
    ``gpus_per_run`` GPUs per task (0 < g <= 1; 0.5 packs two runs per GPU)."""

    workers: int = 1
    gpus_per_run: float = 1.0

    def __post_init__(self) -> None:
        try:
            check_gpus_per_run(self.gpus_per_run)
        except ValueError as exc:
            raise ValueError(f"gpus_per_run: {exc}") from None


Launcher = Callable[[list[PlannedRun], ExecOptions, Slots], Iterator[tuple[PlannedRun, RunRecord]]]
LAUNCHERS: dict[str, Launcher] = {}


def launcher(name: str) -> Callable[[Launcher], Launcher]:
    """Register the decorated function as the launcher ``--launcher name`` runs."""

    def register(fn: Launcher) -> Launcher:
        LAUNCHERS[name] = fn
        return fn

    return register


def load_launchers() -> dict[str, Launcher]:
    """Every launcher: each module of :mod:`bench.launch` imported (once; its
    ``@launcher`` functions register themselves), in the modules' name order."""
    import bench.launch as package

    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    return LAUNCHERS


def launcher_names() -> list[str]:
    """The registered launchers' names (what ``--launcher`` accepts)."""
    return list(load_launchers())


def launch(
    name: str, runs: list[PlannedRun], options: ExecOptions, slots: Slots = Slots()
) -> Iterator[tuple[PlannedRun, RunRecord]]:
    """Yield ``(run, record)`` as runs complete, through the launcher called ``name``."""
    launchers = load_launchers()
    if name not in launchers:
        raise ValueError(f"launcher {name!r} is not one of {', '.join(launchers)}")
    if not runs:
        return iter(())
    return launchers[name](runs, options, slots)
