"""The per-suite results store: ``<results>/<suite>/runs/<key>/result.json``, one
:class:`~bench.core.record.RunRecord` per run key, validated on every write and read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.core.atomic import atomic_write_json, read_json
from bench.core.record import InvalidRecord, validate_record

log = logging.getLogger(__name__)


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
        """The run's record, or None when it has none that can be used (missing, torn, or
        not a run record: the run is to do, and its next record replaces the file)."""
        path = self.result_path(run_key)
        record = read_json(path)
        if record is None:
            return None
        try:
            return validate_record(record)
        except InvalidRecord as err:
            log.warning("ignoring %s: not a run record (%s)", path, err)
            return None

    def is_finished(self, run_key: str) -> bool:
        record = self.read(run_key)
        return bool(record) and record.get("status") == "finished"

    def write(self, record: dict[str, Any]) -> Path:
        """Write ``record`` atomically after checking it (:class:`InvalidRecord` if it is
        not a run record: nothing is written)."""
        record = validate_record(record)
        path = self.result_path(record["run_key"])
        atomic_write_json(path, record)
        return path
