"""Atomic files and the per-suite results store (``<results>/<suite>/runs/<key>/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.atomic import (  # noqa: F401  (re-exported: the store's writers)
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None if missing or unreadable (a torn write)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class RunStore:
    """``result.json`` files of one suite, keyed by run key."""

    def __init__(self, suite_dir: Path) -> None:
        self.suite_dir = Path(suite_dir)
        self.runs_dir = self.suite_dir / "runs"

    def run_dir(self, run_key: str) -> Path:
        return self.runs_dir / run_key

    def result_path(self, run_key: str) -> Path:
        return self.run_dir(run_key) / "result.json"

    def read(self, run_key: str) -> dict[str, Any] | None:
        return read_json(self.result_path(run_key))

    def is_finished(self, run_key: str) -> bool:
        record = self.read(run_key)
        return bool(record) and record.get("status") == "finished"

    def write(self, record: dict[str, Any]) -> Path:
        path = self.result_path(record["run_key"])
        atomic_write_json(path, record)
        return path
