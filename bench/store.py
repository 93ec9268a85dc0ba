"""Atomic files and the per-suite results store (``<results>/<suite>/runs/<key>/``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
