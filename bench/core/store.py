"""The per-suite results store: ``<results>/<suite>/runs/<key>/result.json``, one
:class:`~bench.core.record.RunRecord` per run key, validated on every write and read."""

from __future__ import annotations

import logging
from pathlib import Path

from bench.core.atomic import atomic_write_json, read_json
from bench.core.record import InvalidRecord, RunRecord

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

    def read(self, run_key: str) -> RunRecord | None:
        """The run's record, or None when it has none that can be used (missing, torn, or
        not a run record: the run is to do, and its next record replaces the file)."""
        path = self.result_path(run_key)
        try:
            return read_record(path)
        except InvalidRecord as err:
            log.warning("ignoring %s", err)
            return None

    def is_finished(self, run_key: str) -> bool:
        record = self.read(run_key)
        return record is not None and record.finished

    def write(self, record: RunRecord) -> Path:
        """Write ``record`` atomically after checking it as it is now (:class:`InvalidRecord`
        if it is not a run record: nothing is written)."""
        data = record.checked().dump()
        path = self.result_path(record.run_key)
        atomic_write_json(path, data)
        return path


def read_record(path: Path | str) -> RunRecord | None:
    """The record ``path`` holds; None when it is missing or torn; :class:`InvalidRecord`,
    naming the file, when it holds something else."""
    data = read_json(path)
    if data is None:
        return None
    try:
        return RunRecord.parse(data, source=str(path))
    except InvalidRecord as err:
        raise InvalidRecord(f"{path}: not a run record ({err})") from None
