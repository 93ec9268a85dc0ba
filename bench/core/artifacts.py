"""The trained-artifact cache's layout and what "cached" means, in one place.

Teachers and pretrain stages are trained once per results root and kept by content key:
``<results>/teachers/<key>/`` (``teacher.pt`` + ``meta.json``) and
``<results>/pretrain/<key>/`` (``backbone.pt`` + ``meta.json``). ``meta.json`` is written
last, so an entry is cached when its ``meta.json`` reads and its weights file exists
(:meth:`Entry.cached`): what the engine loads, the dry-run lists and the estimate skips.
:mod:`bench.engine.cache` fills entries (claimed: one process trains each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.atomic import read_json

META_NAME = "meta.json"


@dataclass(frozen=True)
class Kind:
    """One kind of cached artifact: its folder under the results root and weights file."""

    folder: str
    weights: str

    def root(self, results_root: Path | str) -> Path:
        return Path(results_root) / self.folder

    def entry(self, results_root: Path | str, key: str) -> Entry:
        return Entry(self.root(results_root) / key, self)


TEACHER = Kind("teachers", "teacher.pt")
STAGE = Kind("pretrain", "backbone.pt")


@dataclass(frozen=True)
class Entry:
    """The folder of one cached artifact (``folder.name`` is its key)."""

    folder: Path
    kind: Kind

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def weights(self) -> Path:
        return self.folder / self.kind.weights

    @property
    def meta_path(self) -> Path:
        return self.folder / META_NAME

    def meta(self) -> dict[str, Any] | None:
        """The entry's ``meta.json`` (None: missing or torn)."""
        return read_json(self.meta_path)

    def cached(self) -> bool:
        """Complete: ``meta.json`` (written last) reads and the weights file exists."""
        return self.meta() is not None and self.weights.is_file()
