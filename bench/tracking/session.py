"""The MLflow tracking of one ``bench run``: the suite's experiment, a parent run for the
invocation, a child run per RunSpec (:class:`~bench.tracking.runs.RunTracker`, logged by
the process that executes it) and a run per teacher."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bench.tracking.reconcile as reconciling
from bench.core.artifacts import TEACHER
from bench.core.atomic import read_json
from bench.core.record import RunRecord
from bench.tracking.client import (
    enabled,
    flatten_params,
    guard,
    open_experiment,
    owner_token,
    resolve_tracking_uri,
    usable,
)
from bench.tracking.runs import Figures, MlflowRun, TrackingTarget, log_teacher, source_tags


class SuiteTracker:
    """The experiment of a suite and the parent run of one ``bench run`` invocation.

    ``figures``: renders a record's figures (``curves.png``) for the runs this process
    logs from their records (backfills, Ray workers); none when not given."""

    def __init__(
        self,
        target: TrackingTarget,
        results_root: Path,
        figures: Callable[[RunRecord], Figures] | None = None,
    ) -> None:
        self.target = target
        self.results_root = Path(results_root)
        self.figures = figures
        self.teachers_logged: set[str] = set()

    @property
    def uri(self) -> str:
        return self.target.uri

    @property
    def parent_run_id(self) -> str:
        return self.target.parent_run_id

    @classmethod
    def open(
        cls,
        suite_name: str,
        results_root: Path | str,
        tracking_uri: str | None = None,
        params: dict[str, Any] | None = None,
        figures: Callable[[RunRecord], Figures] | None = None,
    ) -> SuiteTracker:
        """Open (or create) the suite's experiment and start the parent run; a store that
        cannot be used is a :class:`~bench.tracking.client.TrackingError` (one line)
        before anything runs."""
        results_root = Path(results_root).resolve()
        uri = resolve_tracking_uri(results_root, tracking_uri)
        experiment_id = open_experiment(uri, suite_name)
        owner = owner_token()
        tags = {
            "kind": "suite",
            "suite": suite_name,
            "owner": owner,
            **source_tags(),
            "command": " ".join(sys.argv),
        }
        name = f"{suite_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        with usable(uri):
            parent = MlflowRun.start(uri, experiment_id, name, tags, flatten_params(params or {}))
        target = TrackingTarget(uri, experiment_id, parent.run_id, owner, suite_name)
        return cls(target, results_root, figures)

    # -- resume

    def reconcile(self, runs: list, store, out=None) -> list[str]:
        """:func:`bench.tracking.reconcile.reconcile` for this suite."""
        backfill = functools.partial(self.log_record, backfill=True)
        return reconciling.reconcile(self.target, runs, store, backfill, self.teachers_logged, out)

    # -- records arriving from the launcher

    def record_done(self, run, record: RunRecord) -> None:
        """After ``result.json`` is written: log the record's teachers, and log the run
        itself if the executing process did not (Ray workers, a broken worker tracker)."""
        if not enabled():
            return
        if not record.mlflow_run_id:
            self.log_record(run, record, backfill=False)
        self.log_teachers(record)

    def log_record(self, run, record: RunRecord, backfill: bool) -> int:
        """:func:`bench.tracking.reconcile.log_record`, then (backfills) its teachers;
        1 if logged."""
        ok = reconciling.log_record(self.target, run, record, backfill, self.figures)
        if ok and backfill:
            self.log_teachers(record)
        return int(ok)

    def log_teachers(self, record: RunRecord) -> None:
        """One run per teacher key of ``record`` in this experiment (once each)."""
        for teacher in record.teachers:
            key = teacher.get("key")
            if not key or key in self.teachers_logged or not enabled():
                continue
            meta_path = TEACHER.entry(self.results_root, key).meta_path
            if not meta_path.is_file():
                continue
            legacy = (read_json(meta_path) or {}).get("legacy_key")
            if legacy and legacy in self.teachers_logged:  # migrated: logged under its old key
                self.teachers_logged.add(key)
                continue
            with guard(f"logging teacher {key}"):
                if log_teacher(self.target, key, meta_path, bool(teacher.get("cached"))):
                    self.teachers_logged.add(key)

    # -- end of the invocation

    def close(
        self,
        status: str,
        counts: dict[str, int] | None = None,
        artifacts: Iterable[Path] = (),
        error: str | None = None,
        base: Path | None = None,
    ) -> None:
        """End the parent run: counts as metrics, the suite's tables and plots as artifacts
        (at their paths relative to ``base``)."""
        if not enabled():
            return
        with guard("ending the suite's MLflow run"):
            parent = self.target.parent
            parent.log(
                metrics={f"runs_{k}": v for k, v in (counts or {}).items()},
                tags={"error": error} if error else None,
            )
            parent.log_files(artifacts, base)
            parent.end(status)
