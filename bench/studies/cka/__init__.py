"""The CKA paper (arXiv 2307.14781): the readings study and the verdict page, and the paper's printed tables.

Its sub-commands (``readings``, ``verdict``) are in :mod:`.commands`; its printed tables
(``--reference paper``) in :mod:`.paper` (:mod:`bench.studies` describes the hooks)."""

from bench.studies.cka.commands import register_commands

__all__ = ["register_commands", "register_published"]


def register_published() -> None:
    """``--reference paper``, ``paper:2``, ``paper:5``: Tables 2 and 5 of the paper."""
    import bench.studies.cka.paper  # noqa: F401  registers them on import (pandas)
