"""Make MLflow and the results store agree when a suite (re)starts, and log a run from
its record after the fact.

Resume (:func:`reconcile`, at the start of every tracked ``bench run``):

* RUNNING runs of the experiment whose owner process is gone (``kill -9``, a crashed
  node) are marked KILLED with an ``error`` tag; runs owned by a live ``bench run`` on
  this host are left alone;
* a run key with a FINISHED child but no finished ``result.json`` gets its
  ``result.json`` back from that child's ``result.json`` artifact (or, if the artifact is
  unreadable, rebuilt from the child's metrics: :func:`rebuild_record`) instead of being
  re-run, so a run key never gets a second FINISHED child;
* a finished ``result.json`` without a FINISHED child (tracking was off or broken) is
  logged to MLflow from the record (:func:`log_record`, tag ``backfilled=result.json``),
  unless the record was migrated (:mod:`bench.experiment.migrate`) from a ``legacy_key`` that has a
  FINISHED child: that child is retagged with the new ``run_key`` instead (its old key
  stays as tag ``legacy_key``), so a migration never logs a run twice.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.record import Metrics, RunRecord
from bench.tracking.client import client, enabled, guard, one_line, owner_alive
from bench.tracking.runs import Figures, RunTracker, TrackingTarget

if TYPE_CHECKING:
    from bench.core.store import RunStore

log = logging.getLogger(__name__)


def reconcile(
    target: TrackingTarget,
    runs: list,
    store: RunStore,
    backfill: Callable[[Any, RunRecord], bool],
    teachers_logged: set[str],
    out=None,
) -> list[str]:
    """Make MLflow and the results store agree before a suite (re)starts; return the
    run keys whose ``result.json`` was restored from MLflow (module docstring).
    ``backfill(run, record)`` logs a finished run MLflow lacks; ``teachers_logged``
    gains the teacher keys the experiment has runs of."""
    out = out if out is not None else sys.stdout
    restored: list[str] = []
    if not enabled():
        return restored
    with guard("reconciling MLflow with the results store"):
        stale = kill_stale(target)
        if stale:
            print(f"tracking: marked {stale} stale RUNNING MLflow run(s) KILLED", file=out)
        finished = finished_children(target, teachers_logged)
        backfilled = retagged = 0
        for run in runs:
            record = store.read(run.key)
            done = record is not None and record.finished
            legacy = record.model_extra.get("legacy_key") if record is not None else None
            if done and run.key not in finished and legacy in finished:
                retag(target, finished, legacy, run.key)
                retagged += 1
            elif done and run.key not in finished:
                backfilled += bool(backfill(run, record))
            elif not done and run.key in finished:
                store.write(restore_record(target, run, finished[run.key]))
                restored.append(run.key)
        say(out, backfilled, retagged, len(restored))
    return restored


def kill_stale(target: TrackingTarget) -> int:
    """Mark the experiment's RUNNING runs whose owner process is gone (or is this one:
    an earlier invocation in this process is over too) KILLED; how many there were."""
    parent = target.parent
    stale = [
        r
        for r in parent.search("attributes.status = 'RUNNING'")
        if r.info.run_id != parent.run_id
        and (r.data.tags.get("owner") == target.owner or not owner_alive(r.data.tags.get("owner")))
    ]
    c = client(parent.uri)
    for r in stale:
        c.set_tag(
            r.info.run_id,
            "error",
            "killed: its bench run process is gone (left RUNNING; marked at restart "
            f"by parent run {parent.run_id})",
        )
        c.set_terminated(r.info.run_id, "KILLED")
    return len(stale)


def finished_children(target: TrackingTarget, teachers_logged: set[str]) -> dict[str, Any]:
    """The FINISHED child run of each run key (the first found); adds the keys of the
    teachers with a FINISHED run to ``teachers_logged``."""
    finished: dict[str, Any] = {}
    for r in target.parent.search("attributes.status = 'FINISHED'"):
        tags = r.data.tags
        if tags.get("kind") == "teacher" and tags.get("teacher_key"):
            teachers_logged.add(tags["teacher_key"])
        elif tags.get("run_key"):
            finished.setdefault(tags["run_key"], r)
    return finished


def retag(target: TrackingTarget, finished: dict[str, Any], legacy: str, key: str) -> None:
    """The child of a migrated run's ``legacy`` key now carries its new run ``key``."""
    child = finished.pop(legacy)
    c = client(target.uri)
    c.set_tag(child.info.run_id, "run_key", key)
    c.set_tag(child.info.run_id, "legacy_key", legacy)
    finished[key] = child


def say(out, backfilled: int, retagged: int, restored: int) -> None:
    """One line per kind of repair :func:`reconcile` made."""
    if backfilled:
        print(
            f"tracking: logged {backfilled} finished run(s) to MLflow from result.json",
            file=out,
        )
    if retagged:
        print(
            f"tracking: retagged {retagged} MLflow run(s) with their migrated run key",
            file=out,
        )
    if restored:
        print(
            f"tracking: restored {restored} result.json file(s) from FINISHED "
            "MLflow runs (not re-run)",
            file=out,
        )


def restore_record(target: TrackingTarget, run, mlrun) -> RunRecord:
    """The record of a FINISHED child: its ``result.json`` artifact, else rebuilt."""
    c = client(target.uri)
    run_id = mlrun.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="ka-bench-mlflow-") as tmp:
            path = c.download_artifacts(run_id, "result.json", tmp)
            record = RunRecord.parse(json.loads(Path(path).read_text()), f"mlflow run {run_id}")
        if record.run_key == run.key and record.finished:
            record.mlflow_run_id = run_id
            return record
    except Exception as exc:  # noqa: BLE001 - not there, unreadable, not a record
        log.warning("result.json artifact of %s unreadable (%s)", run_id, one_line(exc))
    return rebuild_record(c, run, mlrun)


def rebuild_record(mlflow_client, run, mlrun) -> RunRecord:
    """A ``result.json`` record rebuilt from a FINISHED child's metrics and tags (when
    its ``result.json`` artifact is gone): metrics (counts back to ints: the schema reads
    them), per-epoch history, teacher keys."""
    data = mlrun.data
    finals = Metrics.scalars()
    metrics: dict[str, Any] = {k: data.metrics[k] for k in finals if k in data.metrics}
    metrics["task_acc"] = {
        k.split("/", 1)[1]: v for k, v in sorted(data.metrics.items()) if k.startswith("task_acc/")
    }
    epochs: dict[int, dict[str, Any]] = {}  # per-epoch values: every point at step >= 1
    for key in data.metrics:
        if key.startswith(("task_acc/", "time/")) or (key in finals and key != "val_acc"):
            continue  # logged once, at step 0
        for m in mlflow_client.get_metric_history(mlrun.info.run_id, key):
            if m.step >= 1:
                epochs.setdefault(m.step, {"epoch": m.step})[key] = m.value
    history = [epochs[e] for e in sorted(epochs)]
    if history and "val_acc" in history[-1]:
        metrics.setdefault("val_acc", history[-1]["val_acc"])
    keys = [k for k in (data.tags.get("teacher_keys") or "").split(",") if k]
    return RunRecord.for_run(
        run,
        "finished",
        metrics=metrics,
        history=history,
        teachers=[{"key": k} for k in keys],
        timings={k.split("/", 1)[1]: v for k, v in data.metrics.items() if k.startswith("time/")},
        device=data.tags.get("device"),
        mlflow_run_id=mlrun.info.run_id,
        rebuilt_from_mlflow=True,
    )


def log_record(
    target: TrackingTarget,
    run,
    record: RunRecord,
    backfill: bool,
    figures: Callable[[RunRecord], Figures] | None = None,
) -> bool:
    """Log a whole run from its record (history, final metrics, artifacts); first end
    any RUNNING child of the same key this process left behind. True if logged."""
    if not backfill:  # a worker's tracker broke mid-run: end what it left RUNNING
        with guard(f"ending the partial MLflow run of {run.key}"):
            query = f"tags.run_key = '{run.key}' and attributes.status = 'RUNNING'"
            for r in target.parent.search(query):
                if r.data.tags.get("owner") == target.owner:
                    client(target.uri).set_terminated(r.info.run_id, "KILLED")
    extra = {"backfilled": "result.json" if backfill else "record"}
    tracker = RunTracker.start(target, run, record.device, extra)
    if tracker is None:
        return False
    tracker.log_epochs(record.history)
    return tracker.finish(record.model_copy(), figures(record) if figures else None)
