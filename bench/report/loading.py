"""Records -> tidy frames: ``result.json`` files (validated as
:class:`~bench.core.record.RunRecord`) or an MLflow experiment, one row per run; and
:func:`drop_superseded`, which leaves out the runs a current plan replaced."""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.record import InvalidRecord, validate_record

ID_COLUMNS = ["run_key", "suite", "row", "row_order", "column", "column_order", "seed", "method"]
SCALAR_METRICS = [
    "test_acc",
    "val_acc",
    "test_acc_at_best_val",
    "val_falls",
    "val_fall_drop",
]
TASK_PREFIX = "task:"

# --------------------------------------------------------------------------- I/O


def runs_dir(suite_dir: Path | str) -> Path:
    suite_dir = Path(suite_dir)
    return suite_dir / "runs" if (suite_dir / "runs").is_dir() else suite_dir


def read_records(suite_dir: Path | str) -> list[dict[str, Any]]:
    """Every readable ``runs/*/result.json`` record; warns about (and skips) broken ones."""
    records = []
    for path in sorted(runs_dir(suite_dir).glob("*/result.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            warnings.warn(f"skipping unreadable result file {path}: {err}", stacklevel=2)
            continue
        try:
            rec = validate_record(rec)
        except InvalidRecord as err:
            warnings.warn(f"skipping {path}: not a run record ({err})", stacklevel=2)
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records


def _ids(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: rec.get(k) for k in ID_COLUMNS}
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


def results_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Tidy frame of the finished records: ids, scalar metrics (fractions), ``task:T*``."""
    rows = []
    for rec in records:
        if rec.get("status") != "finished":
            continue
        metrics = rec.get("metrics") or {}
        row = _ids(rec) | {m: _num(metrics.get(m)) for m in SCALAR_METRICS}
        for task, acc in (metrics.get("task_acc") or {}).items():
            row[TASK_PREFIX + task] = _num(acc)
        rows.append(row)
    return _tidy(rows)


def failures_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per failed record: ids, ``error`` and ``path``."""
    rows = [
        _ids(r) | {"error": r.get("error"), "path": r.get("_path")}
        for r in records
        if r.get("status") == "failed"
    ]
    return pd.DataFrame(rows, columns=ID_COLUMNS + ["error", "path"])


def histories_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Long frame of the finished runs' per-epoch ``history`` entries (ids + entry keys)."""
    rows = [
        _ids(r) | entry
        for r in records
        if r.get("status") == "finished"
        for entry in (r.get("history") or [])
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


def _mlflow_records(experiment_name: str, tracking_uri: str) -> list[dict[str, Any]]:
    """Child runs (those tagged ``run_key``) as result.json-like records."""
    import mlflow

    if mlflow.MlflowClient(tracking_uri).get_experiment_by_name(experiment_name) is None:
        raise ValueError(f"no MLflow experiment {experiment_name!r} at {tracking_uri}")
    with _tracking_uri(tracking_uri):
        runs = mlflow.search_runs(experiment_names=[experiment_name], output_format="pandas")
    if runs.empty or "tags.run_key" not in runs:
        return []
    runs = runs[runs["tags.run_key"].notna()]
    if "tags.kind" in runs:  # teacher runs (kind=teacher) are not table rows
        runs = runs[runs["tags.kind"].isna() | (runs["tags.kind"] == "run")]
    runs = runs.sort_values("start_time")
    status_map = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed"}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for _, r in runs.iterrows():
        status = status_map.get(r["status"])
        if status is None:  # RUNNING / SCHEDULED
            continue

        def tag(name: str, r=r) -> Any:
            v = r.get(f"tags.{name}")
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        def as_int(v: Any) -> Any:
            try:
                return int(v)
            except (TypeError, ValueError):
                return v

        tasks = {
            c.split("/", 1)[1]: _num(r[c])
            for c in runs.columns
            if c.startswith("metrics.task_acc/") and not pd.isna(r[c])
        }
        metrics = {m: _num(r.get(f"metrics.{m}")) for m in SCALAR_METRICS}
        metrics = {m: v for m, v in metrics.items() if not math.isnan(v)}  # logged ones
        record = {
            "run_key": tag("run_key"),
            "status": status,
            "suite": tag("suite"),
            "method": tag("method"),
            "row": tag("row"),
            "row_order": as_int(tag("row_order")),
            "column": tag("column"),
            "column_order": as_int(tag("column_order")),
            "seed": as_int(tag("seed")),
            "metrics": metrics | {"task_acc": tasks},
            "error": tag("error"),
        }
        try:
            record = validate_record(record) | {"_path": f"mlflow run {r['run_id']}"}
        except InvalidRecord as err:
            warnings.warn(
                f"skipping MLflow run {r['run_id']}: not a run record ({err})", stacklevel=2
            )
            continue
        records[(status, tag("run_key"))] = record  # latest run per key and status wins
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
    records: list[dict[str, Any]], planned: dict[tuple[str, str, int], str]
) -> list[dict[str, Any]]:
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
        if planned.get((r["row"], r["column"], r["seed"]), r["run_key"]) != r["run_key"]:
            continue
        if r["row"] in rows:
            r = {**r, "row_order": rows.index(r["row"])}
        if r["column"] in columns:
            r = {**r, "column_order": columns.index(r["column"])}
        kept.append(r)
    return kept
