"""Records -> tidy frames: ``result.json`` files or an MLflow experiment read as
:class:`~bench.core.record.RunRecord` objects, turned into pandas here and nowhere else
(:func:`results_frame`, :func:`failures_frame`, :func:`histories_frame`), one row per run;
and :func:`drop_superseded`, which leaves out the runs a current plan replaced."""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.record import InvalidRecord, Metrics, RunRecord
from bench.core.store import read_record

ID_COLUMNS = list(RunRecord.IDS)
SCALAR_METRICS = list(Metrics.frame_columns())
TASK_PREFIX = "task:"

# --------------------------------------------------------------------------- I/O


def runs_dir(suite_dir: Path | str) -> Path:
    suite_dir = Path(suite_dir)
    return suite_dir / "runs" if (suite_dir / "runs").is_dir() else suite_dir


def read_records(suite_dir: Path | str) -> list[RunRecord]:
    """Every readable ``runs/*/result.json`` record; warns about (and skips) broken ones."""
    records = []
    for path in sorted(runs_dir(suite_dir).glob("*/result.json")):
        try:
            record = read_record(path)
        except InvalidRecord as err:
            warnings.warn(f"skipping {err}", stacklevel=2)
            continue
        if record is None:
            warnings.warn(f"skipping unreadable result file {path}", stacklevel=2)
            continue
        records.append(record)
    return records


def _ids(rec: RunRecord) -> dict[str, Any]:
    out = {k: getattr(rec, k) for k in ID_COLUMNS}
    for k in ("row_order", "column_order"):
        out[k] = math.inf if out[k] is None else out[k]
    return out


def _num(x: Any) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def task_order(name: str) -> tuple:
    m = re.fullmatch(r"(?:task:)?T(\d+)", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + SCALAR_METRICS)
    tasks = sorted((c for c in df.columns if c.startswith(TASK_PREFIX)), key=task_order)
    for c in SCALAR_METRICS:
        if c not in df:
            df[c] = math.nan
    return df[ID_COLUMNS + SCALAR_METRICS + tasks].reset_index(drop=True)


def results_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Tidy frame of the finished records: ids, scalar metrics (fractions), ``task:T*``."""
    rows = []
    for rec in records:
        if not rec.finished:
            continue
        metrics = rec.metrics
        row = _ids(rec) | {m: _num(getattr(metrics, m)) for m in SCALAR_METRICS}
        for task, acc in metrics.task_acc.items():
            row[TASK_PREFIX + task] = _num(acc)
        rows.append(row)
    return _tidy(rows)


def failures_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per failed record: ids, ``error`` and ``path`` (where it was read from)."""
    rows = [_ids(r) | {"error": r.error, "path": r.source} for r in records if not r.finished]
    return pd.DataFrame(rows, columns=ID_COLUMNS + ["error", "path"])


def histories_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Long frame of the finished runs' per-epoch ``history`` entries (ids + entry keys)."""
    rows = [
        _ids(r) | entry
        for r in records
        if r.finished
        for entry in r.history
        if isinstance(entry, dict) and "epoch" in entry
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=ID_COLUMNS + ["epoch"])


def load_results(suite_dir: Path | str) -> pd.DataFrame:
    """Tidy frame, one row per finished run of ``suite_dir`` (failed runs: ``load_failures``)."""
    return results_frame(read_records(suite_dir))


def load_failures(suite_dir: Path | str) -> pd.DataFrame:
    """The failed runs of ``suite_dir`` (excluded from tables, counted in their notes)."""
    return failures_frame(read_records(suite_dir))


def load_histories(suite_dir: Path | str) -> pd.DataFrame:
    """Per-epoch training history of the finished runs of ``suite_dir``."""
    return histories_frame(read_records(suite_dir))


# ------------------------------------------------------------------------ MLflow


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    import mlflow

    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - older/newer mlflow layouts
        _use_tracking_uri = None
    if _use_tracking_uri is not None:
        with _use_tracking_uri(uri):
            yield
        return
    old = mlflow.get_tracking_uri()  # pragma: no cover
    mlflow.set_tracking_uri(uri)  # pragma: no cover
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        mlflow.set_tracking_uri(old)


MLFLOW_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed"}


def _child_runs(experiment_name: str, tracking_uri: str) -> pd.DataFrame:
    """The experiment's ended child runs (tagged ``run_key``, not teachers), oldest first."""
    import mlflow

    if mlflow.MlflowClient(tracking_uri).get_experiment_by_name(experiment_name) is None:
        raise ValueError(f"no MLflow experiment {experiment_name!r} at {tracking_uri}")
    with _tracking_uri(tracking_uri):
        runs = mlflow.search_runs(experiment_names=[experiment_name], output_format="pandas")
    if runs.empty or "tags.run_key" not in runs:
        return runs.iloc[0:0]
    runs = runs[runs["tags.run_key"].notna()]
    if "tags.kind" in runs:  # teacher runs (kind=teacher) are not table rows
        runs = runs[runs["tags.kind"].isna() | (runs["tags.kind"] == "run")]
    runs = runs[runs["status"].isin(list(MLFLOW_STATUS))]  # not RUNNING / SCHEDULED
    return runs.sort_values("start_time")


def _tag(run: pd.Series, name: str) -> Any:
    value = run.get(f"tags.{name}")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _child_record(run: pd.Series) -> dict[str, Any]:
    """One child run (a ``search_runs`` row) as the data of a record: its identity tags
    (numbers as the tags' text: the record's schema reads them), metrics and error."""
    tasks = {
        c.split("/", 1)[1]: _num(run[c])
        for c in run.index
        if c.startswith("metrics.task_acc/") and not pd.isna(run[c])
    }
    metrics = {m: _num(run.get(f"metrics.{m}")) for m in SCALAR_METRICS}
    metrics = {m: v for m, v in metrics.items() if not math.isnan(v)}  # logged ones
    return {
        **{name: _tag(run, name) for name in RunRecord.IDS},
        "status": MLFLOW_STATUS[run["status"]],
        "metrics": metrics | {"task_acc": tasks},
        "error": _tag(run, "error"),
    }


def _mlflow_records(experiment_name: str, tracking_uri: str) -> list[RunRecord]:
    """Child runs (those tagged ``run_key``) as records: the latest per key and status, a
    failed one only where its key has no finished one."""
    records: dict[tuple[str, str], RunRecord] = {}
    for _, run in _child_runs(experiment_name, tracking_uri).iterrows():
        try:
            record = RunRecord.parse(_child_record(run), f"mlflow run {run['run_id']}")
        except InvalidRecord as err:
            warnings.warn(
                f"skipping MLflow run {run['run_id']}: not a run record ({err})", stacklevel=2
            )
            continue
        records[(record.status, record.run_key)] = record  # latest run wins
    finished = {key for status, key in records if status == "finished"}
    return [
        rec for (status, key), rec in records.items() if status == "finished" or key not in finished
    ]


def load_results_mlflow(experiment_name: str, tracking_uri: str) -> pd.DataFrame:
    """``load_results`` from an MLflow experiment via ``mlflow.search_runs``.

    Child runs carry tags ``run_key, method, row, row_order, column, column_order, seed``
    and metrics ``test_acc`` (+ ``val_acc``, ``test_acc_at_best_val``) and
    ``task_acc/T1``...; MLflow status FINISHED = finished, FAILED/KILLED = failed.
    """
    return results_frame(_mlflow_records(experiment_name, tracking_uri))


def load_failures_mlflow(experiment_name: str, tracking_uri: str) -> pd.DataFrame:
    """Failed child runs whose run key has no finished run (see ``load_results_mlflow``)."""
    return failures_frame(_mlflow_records(experiment_name, tracking_uri))


def drop_superseded(
    records: list[RunRecord], planned: dict[tuple[str, str, int], str]
) -> list[RunRecord]:
    """``records`` without those a current plan supersedes: a record whose (row, column,
    seed) the plan now runs under another run key (the row's method, params or recipe
    changed, e.g. a new default reading) would otherwise be averaged with the new one.
    Cells the plan does not name (seeds left out by ``--seeds``) are kept. Rows and
    columns the plan names take the plan's order (``planned`` is in table order), so
    records written under an earlier order of the suite's entries sort as the suite
    reads now."""
    rows = list(dict.fromkeys(row for row, _, _ in planned))
    columns = list(dict.fromkeys(column for _, column, _ in planned))
    kept = []
    for r in records:
        if planned.get((r.row, r.column, r.seed), r.run_key) != r.run_key:
            continue
        order = {}
        if r.row in rows:
            order["row_order"] = rows.index(r.row)
        if r.column in columns:
            order["column_order"] = columns.index(r.column)
        kept.append(r.model_copy(update=order) if order else r)
    return kept
