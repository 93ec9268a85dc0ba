"""The run API: parent and child MLflow runs, and what a suite's runs and teachers log.

One set of calls for every kind of run: :meth:`MlflowRun.start` (a parent: a ``bench
run`` invocation, a tune study), :meth:`MlflowRun.child` (a suite's run, a teacher, a
tune trial), then ``log`` / ``log_epochs`` / ``log_files`` and ``end``. These raise; the
callers wrap them in :func:`~bench.tracking.client.guard`. A training loop logs its
epochs with :meth:`MlflowRun.log_epochs_later`: queued for a server
(:mod:`bench.tracking.sender`), written at once to a local store; ``end`` waits (briefly)
for what is queued.

What a suite's child run holds (the contract :func:`bench.report.load_results_mlflow`
reads):

* tags ``run_key, method, row, row_order, column, column_order, seed, suite``, plus
  ``kind=run``, ``git_commit`` (+ ``git_dirty``), ``device``, ``teacher_keys`` (comma
  separated; each names a run tagged ``kind=teacher, teacher_key=<key>``), ``owner``
  (host:pid:start of the ``bench run`` process), ``error`` when it failed,
  ``resumed_from_epoch`` when it continued from a checkpoint, ``backfilled`` when it was
  logged after the fact (``result.json``: at a restart; ``record``: by the suite process
  for a worker that did not log it live, e.g. on Ray);
* params: the resolved RunSpec flattened with dotted names (``dataset.name``,
  ``student.arch``, ``optim.lr``, ``params.T``, ``teachers.optim.epochs``, ...);
* metrics per epoch (step = epoch, logged live through the runner's epoch callbacks):
  ``loss``, ``loss/<term>``, ``lr``, ``epoch_time``, ``data_time``, ``step_time``,
  ``val_acc``; final (step 0):
  ``test_acc``, ``task_acc/T1``..., ``best_val_acc``, ``best_val_epoch``,
  ``test_acc_at_best_val``, ``time/{teachers,train,total}``;
* artifacts: ``config.yaml`` (the resolved run), ``result.json`` (the exact record the
  results store holds) and the figures the caller rendered (``curves.png``).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

import bench.tracking.sender as sender
from bench.core.atomic import read_json
from bench.core.record import Metrics, RunRecord, identity
from bench.tracking.client import (
    MAX_TAG_VALUE,
    client,
    enabled,
    flatten_params,
    git_info,
    guard,
    log_batch,
    remote,
)

Figures = dict[str, bytes]  # artifact file name -> content (e.g. "curves.png")


# ------------------------------------------------------------------- the run API


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 3] + "..."


@dataclass(frozen=True)
class MlflowRun:
    """One MLflow run of an experiment (picklable: a handle, no client inside)."""

    uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def start(
        cls,
        uri: str,
        experiment_id: str,
        name: str,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> MlflowRun:
        """Create a RUNNING run named ``name`` with ``tags`` and ``params``."""
        tags = {k: _text(v) for k, v in tags.items()}
        created = client(uri).create_run(experiment_id, tags=tags, run_name=name)
        run = cls(uri, experiment_id, created.info.run_id)
        if params:
            run.log(params=params)
        return run

    def child(
        self, name: str, tags: dict[str, str], params: dict[str, str] | None = None
    ) -> MlflowRun:
        """A run under this one (tag ``mlflow.parentRunId``)."""
        tags = {"mlflow.parentRunId": self.run_id, **tags}
        return MlflowRun.start(self.uri, self.experiment_id, name, tags, params)

    def resume(self) -> None:
        """Mark an ended run RUNNING again (a study resumed by a later invocation)."""
        client(self.uri).update_run(self.run_id, status="RUNNING")

    def log(
        self,
        metrics: dict[str, float] | None = None,
        step: int = 0,
        tags: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        """Metrics at ``step``, tags (cut to MLflow's length) and params, in few calls."""
        from mlflow.entities import Metric, Param, RunTag

        now = _now_ms()
        log_batch(
            client(self.uri),
            self.run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, _text(v)) for k, v in (tags or {}).items()],
        )

    def log_epochs(self, records: Iterable[dict[str, Any]], step=None) -> None:
        """Every numeric value of each epoch record at ``step(record)`` (default: its
        ``epoch``)."""
        log_batch(client(self.uri), self.run_id, metrics=self._epoch_metrics(records, step))

    def log_epochs_later(self, records: Iterable[dict[str, Any]], what: str, step=None) -> None:
        """:meth:`log_epochs` without waiting for a server: queued
        (:func:`bench.tracking.sender.submit`; ``what`` names the call if sending fails).
        A local store is written at once, as by :meth:`log_epochs`."""
        if not remote(self.uri):
            self.log_epochs(records, step)
            return
        sender.submit(self.uri, self.run_id, self._epoch_metrics(records, step), what)

    @staticmethod
    def _epoch_metrics(records: Iterable[dict[str, Any]], step) -> list:
        from mlflow.entities import Metric

        now = _now_ms()
        return [
            Metric(k, v, now, int(rec["epoch"]) if step is None else step(rec))
            for rec in records
            for k, v in epoch_metrics(rec).items()
        ]

    def flush(self) -> None:
        """Wait (at most :data:`~bench.tracking.sender.FLUSH_SECONDS`) for the queued
        epoch metrics; :class:`~bench.tracking.sender.NotSent` if they did not go."""
        if remote(self.uri):
            sender.flush()

    def log_files(self, paths: Iterable[Path | str], base: Path | None = None) -> None:
        """Files as artifacts, at their folder relative to ``base`` (else at the top)."""
        c = client(self.uri)
        for path in map(Path, paths):
            if path.is_file():
                inside = base is not None and path.is_relative_to(base)
                sub = path.parent.relative_to(base).as_posix() if inside else "."
                c.log_artifact(self.run_id, str(path), None if sub == "." else sub)

    def log_folder(self, folder: Path | str) -> None:
        client(self.uri).log_artifacts(self.run_id, str(folder))

    def end(self, status: str, error: str | None = None) -> None:
        """End the run ``status`` (FINISHED, FAILED, KILLED), with an ``error`` tag, once
        its queued epoch metrics are sent (:meth:`flush`)."""
        self.flush()
        c = client(self.uri)
        if error:
            c.set_tag(self.run_id, "error", _text(error))
        c.set_terminated(self.run_id, status)

    def search(self, filter_string: str) -> list:
        """Runs of this run's experiment matching ``filter_string`` (every page)."""
        return search_runs(self.uri, self.experiment_id, filter_string)


def search_runs(uri: str, experiment_id: str, filter_string: str) -> list:
    c = client(uri)
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def provenance() -> dict[str, str]:
    """Tags naming the code that produced a run."""
    commit, dirty = git_info()
    return {"git_commit": commit, "git_dirty": dirty}


def source_tags() -> dict[str, str]:
    """:func:`provenance` and MLflow's own commit tag (a suite's parent and child runs)."""
    tags = provenance()
    return {**tags, "mlflow.source.git.commit": tags["git_commit"]}


# -------------------------------------------------------------- record -> metrics


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def final_metrics(record: RunRecord) -> dict[str, float]:
    """The end-of-run metrics of a record, by MLflow name (step 0)."""
    metrics = record.metrics
    scalars = {k: getattr(metrics, k) for k in Metrics.scalars()}
    out = {k: float(v) for k, v in scalars.items() if _finite(v)}
    history = record.history
    if history and "val_acc" in history[-1]:
        out.pop("val_acc", None)  # already the last point of the per-epoch val_acc curve
    for task, acc in metrics.task_acc.items():
        if _finite(acc):
            out[f"task_acc/{task}"] = float(acc)
    for name, seconds in record.timings.items():
        if _finite(seconds):
            out[f"time/{name}"] = float(seconds)
    return out


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The per-epoch values of one history entry (everything numeric but ``epoch``)."""
    return {k: float(v) for k, v in record.items() if k != "epoch" and _finite(v)}


# ---------------------------------------------------------- a suite's child runs


@dataclass(frozen=True)
class TrackingTarget:
    """What a process executing a run needs to log it (picklable, sent to workers)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    owner: str
    suite: str

    @property
    def parent(self) -> MlflowRun:
        return MlflowRun(self.uri, self.experiment_id, self.parent_run_id)


def run_tags(target: TrackingTarget, run, device: str | None) -> dict[str, str]:
    """Tags of a child run at creation (see the module docstring)."""
    tags = {
        "kind": "run",
        **{name: str(value) for name, value in identity(run).items()},
        **source_tags(),
        "owner": target.owner,
    }
    if device is not None:
        tags["device"] = device
    return tags


def run_config(run) -> dict[str, Any]:
    """The resolved run as written to the ``config.yaml`` artifact."""
    return {"run_key": run.key, **asdict(run.meta), "spec": run.spec.model_dump(mode="json")}


class RunTracker:
    """The child run of one RunSpec, in the process that executes it.

    ``start`` creates it (RUNNING, params, tags), :meth:`on_epoch` is an epoch callback of
    the shared loop, :meth:`finish` logs the final metrics and artifacts and ends it
    FINISHED or FAILED from the record. Every call is guarded (:func:`guard`)."""

    def __init__(self, target: TrackingTarget, run, mlrun: MlflowRun) -> None:
        self.target, self.run, self.mlrun = target, run, mlrun

    @property
    def run_id(self) -> str:
        return self.mlrun.run_id

    @classmethod
    def start(
        cls,
        target: TrackingTarget,
        run,
        device: str | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> RunTracker | None:
        if not enabled():
            return None
        with guard(f"starting the MLflow run of {run.key}"):
            tags = {**run_tags(target, run, device), **(extra_tags or {})}
            name = f"{run.meta.row} | {run.meta.column} | seed {run.meta.seed}"
            params = flatten_params(run.spec.model_dump(mode="json"))
            return cls(target, run, target.parent.child(name, tags, params))
        return None

    def on_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Epoch callback: every numeric value of the epoch's record at step=epoch."""
        self.log_epochs([record])

    def log_epochs(self, records: list[dict[str, Any]]) -> None:
        if not enabled():
            return
        what = f"logging epoch metrics of {self.run.key}"
        with guard(what):
            self.mlrun.log_epochs_later(records, what)

    def finish(self, record: RunRecord, figures: Figures | None = None) -> bool:
        """End the run from its record, with ``figures`` among its artifacts; sets
        ``record.mlflow_run_id`` when it worked."""
        if not enabled():
            return False
        with guard(f"finishing the MLflow run of {self.run.key}"):
            self.mlrun.flush()  # a server that stopped answering: found out here, in seconds
            tags = {"teacher_keys": ",".join(t["key"] for t in record.teachers)}
            if record.error:
                tags["error"] = record.error
            if record.resumed_from_epoch:
                tags["resumed_from_epoch"] = record.resumed_from_epoch
            self.mlrun.log(metrics=final_metrics(record), tags=tags)
            logged = record.model_copy(update={"mlflow_run_id": self.run_id})
            with tempfile.TemporaryDirectory(prefix="ka-bench-mlflow-") as tmp:
                write_run_artifacts(Path(tmp), self.run, logged, figures or {})
                self.mlrun.log_folder(tmp)
            self.mlrun.end("FINISHED" if record.finished else "FAILED")
            record.mlflow_run_id = self.run_id
            return True
        return False

    def kill(self, reason: str) -> None:
        """End the run KILLED (Ctrl-C): nothing to record, the run key stays to do."""
        if not enabled():
            return
        with guard(f"ending the MLflow run of {self.run.key}"):
            self.mlrun.end("KILLED", error=reason)


def write_run_artifacts(folder: Path, run, record: RunRecord, figures: Figures) -> None:
    """``config.yaml``, ``result.json`` (as the results store writes it) and the rendered
    ``figures`` (``curves.png``)."""
    (folder / "config.yaml").write_text(yaml.safe_dump(run_config(run), sort_keys=False))
    (folder / "result.json").write_text(
        json.dumps(record.dump(), indent=2, sort_keys=True, default=str) + "\n"
    )
    for name, data in figures.items():
        (folder / name).write_bytes(data)


# ------------------------------------------------------------------ teacher runs


def log_teacher(
    target: TrackingTarget, key: str, meta_path: Path, cached: bool
) -> MlflowRun | None:
    """One run of a teacher key (tag ``kind=teacher``) under the suite's parent, from the
    teacher cache's ``meta.json``: params, per-epoch history, own-class accuracy. None
    when the cache has no readable ``meta.json``."""
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        return None
    spec = meta.get("spec") or {}
    task = spec.get("task")
    name = f"teacher T{(task or 0) + 1} {spec.get('arch', '')} [{key[:8]}]"
    tags = {
        "kind": "teacher",
        "teacher_key": key,
        "suite": target.suite,
        "task": f"T{(task or 0) + 1}",
        "arch": str(spec.get("arch")),
        "dataset": str((spec.get("dataset") or {}).get("name")),
        "from_cache": str(cached).lower(),
        **provenance(),
        "owner": target.owner,
    }
    mlrun = target.parent.child(name, tags, flatten_params(spec))
    mlrun.log_epochs(meta.get("history") or [])
    finals = {k: meta[k] for k in ("test_acc_own_classes", "train_time") if _finite(meta.get(k))}
    mlrun.log(metrics=finals)
    mlrun.log_files([meta_path])
    mlrun.end("FINISHED")
    return mlrun
