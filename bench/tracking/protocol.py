"""What running a suite (:func:`bench.launch.suite.run_suite`) needs from a suite tracker:
a :class:`TrackerOpener` opens one for the suite, and the :class:`Tracker` reconciles what
it holds with the results on disk, is handed each run's record as the launcher yields it,
and is closed once, with the invocation's outcome. The MLflow
:class:`~bench.tracking.session.SuiteTracker` is one; another tracker is one class with
these methods, given to ``run_suite(tracker=...)``, with no edit to the suite runner."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bench.core.record import RunRecord
from bench.core.specs import PlannedRun
from bench.core.store import RunStore
from bench.tracking.runs import TrackingTarget


@runtime_checkable
class Tracker(Protocol):
    """The tracking of one invocation of a suite, open until :meth:`close`."""

    #: where the processes that execute runs log them live (an MLflow parent run), or
    #: None: they log nothing, and the tracker learns each run from :meth:`record_done`.
    target: TrackingTarget | None

    def reconcile(self, runs: list[PlannedRun], store: RunStore, out=None) -> Any:
        """Before anything runs: bring the tracker and the store's records in line
        (resume), printing what it did to ``out``."""

    def record_done(self, run: PlannedRun, record: RunRecord) -> None:
        """A run's record, after its ``result.json`` is written (finished or failed)."""

    def close(
        self,
        status: str,
        counts: dict[str, int] | None = None,
        artifacts: Iterable[Path] = (),
        error: str | None = None,
        base: Path | None = None,
    ) -> None:
        """End the invocation: ``status`` FINISHED, FAILED or KILLED; ``counts`` of the
        runs (total, ran, skipped, failed); the suite's files (``artifacts``, at their
        paths relative to ``base``); ``error``, one line, when it did not finish."""


class TrackerOpener(Protocol):
    """Opens the :class:`Tracker` of a suite's invocation; a store that cannot be used
    fails here, before anything runs."""

    def __call__(
        self,
        suite_name: str,
        results_root: Path,
        tracking_uri: str | None,
        params: dict[str, Any],
    ) -> Tracker: ...
