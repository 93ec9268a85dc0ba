"""MLflow tracking: one experiment per suite (or tune study), a parent run per
invocation, a child run per RunSpec, teacher and trial.

``client`` (the store, errors, HTTP limits) -> ``sender`` (epoch metrics to a server, off
the training loop) -> ``runs`` (the run API and what a run logs) -> ``reconcile``
(resume: MLflow <-> result.json) -> ``session`` (a ``bench run``). ``protocol``: what the
suite runner needs from a suite tracker (:class:`Tracker`), which ``SuiteTracker`` is."""

from bench.tracking.client import (
    TrackingError,
    default_tracking_uri,
    enabled,
    guard,
    one_line,
    probe,
    resolve_tracking_uri,
    sqlite_path,
)
from bench.tracking.protocol import Tracker, TrackerOpener
from bench.tracking.runs import MlflowRun, RunTracker, TrackingTarget, epoch_metrics
from bench.tracking.session import SuiteTracker

__all__ = [
    "MlflowRun",
    "RunTracker",
    "SuiteTracker",
    "Tracker",
    "TrackerOpener",
    "TrackingError",
    "TrackingTarget",
    "default_tracking_uri",
    "enabled",
    "epoch_metrics",
    "guard",
    "one_line",
    "probe",
    "resolve_tracking_uri",
    "sqlite_path",
]
