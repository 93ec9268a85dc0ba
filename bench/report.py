"""Publication tables from a suite's results: load, summarise over seeds, rank, format.

Flow: ``load_results`` (result.json files) or ``load_results_mlflow`` -> tidy frame,
one row per finished run -> ``summarize`` (mean / sample std / n over seeds, in %)
-> ``build_table`` (ordering, best / second best, paired tests vs the best, notes,
optional paper reference rows) -> ``to_latex`` / ``to_markdown`` / ``to_csv``.
``render_table`` and ``write_suite_tables`` are the entry points of the CLI/harness.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from bench import stats
from bench.atomic import atomic_write_text
from bench.health import COLLAPSE_DROP, COLLAPSE_FALLS, is_collapsing

DEFAULT_REFERENCE_METHODS = ("supervised", "teacher")
ID_COLUMNS = ["run_key", "suite", "row", "row_order", "column", "column_order", "seed", "method"]
SCALAR_METRICS = [
    "test_acc",
    "val_acc",
    "test_acc_at_best_val",
    "val_falls",
    "val_fall_drop",
]
TASK_PREFIX = "task:"
MERGE = "Merge"
AVG = "Avg."
STATS = ("mean", "std", "n")
PAPER = "arXiv 2307.14781"
METRIC_TEXT = {
    "test_acc": "union top-1 test accuracy (last epoch)",
    "val_acc": "validation accuracy",
    "test_acc_at_best_val": "test accuracy at the best-validation epoch",
}
# Suite column ids accepted as the paper's dataset names (reference rows).
DATASET_ALIASES = {
    "cub": "cub200",
    "cub200_2011": "cub200",
    "cub_200_2011": "cub200",
    "dogs": "stanford_dogs",
    "cars": "stanford_cars",
    "aircraft": "fgvc_aircraft",
}


# --------------------------------------------------------------------------- I/O


def _runs_dir(suite_dir: Path | str) -> Path:
    suite_dir = Path(suite_dir)
    return suite_dir / "runs" if (suite_dir / "runs").is_dir() else suite_dir


def read_records(suite_dir: Path | str) -> list[dict[str, Any]]:
    """Every readable ``runs/*/result.json`` record; warns about (and skips) broken ones."""
    records = []
    for path in sorted(_runs_dir(suite_dir).glob("*/result.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            warnings.warn(f"skipping unreadable result file {path}: {err}", stacklevel=2)
            continue
        if not isinstance(rec, dict):
            warnings.warn(f"skipping {path}: not a JSON object", stacklevel=2)
            continue
        missing = [k for k in ("run_key", "status", "row", "column", "seed") if k not in rec]
        if missing:
            warnings.warn(f"skipping partial result file {path}: missing {missing}", stacklevel=2)
            continue
        if rec["status"] not in ("finished", "failed"):
            warnings.warn(f"skipping {path}: status {rec['status']!r}", stacklevel=2)
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


def _task_key(name: str) -> tuple:
    m = re.fullmatch(r"(?:task:)?T(\d+)", name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + SCALAR_METRICS)
    tasks = sorted((c for c in df.columns if c.startswith(TASK_PREFIX)), key=_task_key)
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
        records[(status, tag("run_key"))] = {  # latest run per key and status wins
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
            "_path": f"mlflow run {r['run_id']}",
        }
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


# ----------------------------------------------------------------- paper numbers


def paper_reference(table: int = 2) -> pd.DataFrame:
    """Published numbers of the paper's Table ``table`` (2 or 5), in %.

    Columns: table, method (this project's name), row (display label), dataset, mean,
    std, note. Table 2 datasets: cub200, stanford_dogs, stanford_cars, fgvc_aircraft
    and ``average`` (the printed Average column); Table 5: T1 (Stanford Cars),
    T2 (FGVC-Aircraft), Merge. Tables 3 and 4 are absent from the paper text.
    """
    path = resources.files("bench").joinpath("reference/paper_tables.csv")
    with path.open("r", encoding="utf-8") as fh:
        ref = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    ref["note"] = ref["note"].fillna("")
    out = ref[ref["table"] == int(table)].reset_index(drop=True)
    if out.empty:
        raise ValueError(
            f"no published numbers for Table {table}: the paper text has Tables 2 and 5 only"
        )
    return out


def _parse_reference(reference: str | None) -> int | None:
    if reference is None:
        return None
    m = re.fullmatch(r"paper(?::(\d+))?", str(reference))
    if not m or int(m.group(1) or 2) not in (2, 5):
        raise ValueError(f"reference must be 'paper', 'paper:2' or 'paper:5', not {reference!r}")
    return int(m.group(1) or 2)


# --------------------------------------------------------------------- summarise


def _order(df: pd.DataFrame, name: str) -> list[str]:
    first = df.groupby(name, sort=False)[f"{name}_order"].min()
    return sorted(first.index, key=lambda k: (first[k], str(k)))


def per_seed_values(df: pd.DataFrame, metric: str = "test_acc", per_task: bool = False):
    """Long frame ``row, column, part, seed, value`` (value in %), one value per seed.

    ``part`` is ``""`` unless ``per_task`` (then ``T1``..``TN`` and ``Merge`` = ``metric``).
    Duplicate runs of one (row, column, seed) are averaged, with a warning.
    """
    keys = ["row", "column", "seed"]
    pieces = [df[keys].assign(part=MERGE if per_task else "", value=df[metric])]
    if per_task:
        for c in sorted((c for c in df if c.startswith(TASK_PREFIX)), key=_task_key):
            pieces.append(df[keys].assign(part=c[len(TASK_PREFIX) :], value=df[c]))
    long = pd.concat(pieces, ignore_index=True).dropna(subset=["value"])
    long["value"] = long["value"].astype(float) * 100.0
    group = long.groupby(["row", "column", "part", "seed"], sort=False)["value"]
    dups = group.size()
    if (dups > 1).any():
        warnings.warn(
            f"{int((dups > 1).sum())} (row, column, seed) cells have several runs; averaged",
            stacklevel=2,
        )
    return group.mean().reset_index()


def _cell_keys(df: pd.DataFrame, columns: list[str], per_task: bool, long: pd.DataFrame):
    if not per_task:
        return [(c,) for c in columns]
    keys = []
    for c in columns:
        parts = set(long.loc[long["column"] == c, "part"])
        tasks = sorted((p for p in parts if p != MERGE), key=_task_key)
        keys += [(c, p) for p in tasks] + [(c, MERGE)]
    return keys


def _add_avg(frame: pd.DataFrame, columns: list[str], per_task: bool) -> pd.DataFrame:
    """Append ``Avg.``: the mean over dataset columns of the per-row means (NaN if any missing)."""
    if len(columns) < 2:
        return frame
    merge = [(c, MERGE, "mean") if per_task else (c, "mean") for c in columns]
    pad = ("",) if per_task else ()
    frame = frame.copy()
    frame[(AVG, *pad, "mean")] = frame[merge].mean(axis=1, skipna=False)
    frame[(AVG, *pad, "std")] = math.nan
    frame[(AVG, *pad, "n")] = pd.array([pd.NA] * len(frame), dtype="Int64")
    return frame


def _empty_summary(rows: Sequence[str], keys: Sequence[tuple], per_task: bool) -> pd.DataFrame:
    cols = pd.MultiIndex.from_tuples(
        [(*k, s) for k in keys for s in STATS],
        names=["column", "part", "stat"] if per_task else ["column", "stat"],
    )
    frame = pd.DataFrame(math.nan, index=pd.Index(list(rows), name="row"), columns=cols)
    for k in keys:
        frame[(*k, "n")] = pd.array([pd.NA] * len(frame), dtype="Int64")
    return frame


def summarize(df: pd.DataFrame, metric: str = "test_acc", per_task: bool = False) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and n over seeds, in %, rows x datasets.

    Rows (index ``row``) follow ``row_order``; columns are a MultiIndex
    ``(column, stat)`` — or ``(column, part, stat)`` with ``part`` in T1..TN, Merge when
    ``per_task`` — in ``column_order``, with stat in mean/std/n, plus ``Avg.`` (mean of
    the per-row dataset means) when there is more than one dataset column.
    """
    if df.empty:
        return _empty_summary([], [], per_task)
    rows, columns = _order(df, "row"), _order(df, "column")
    long = per_seed_values(df, metric, per_task)
    keys = _cell_keys(df, columns, per_task, long)
    agg = long.groupby(["row", "column", "part"])["value"].agg(["mean", "std", "count"])
    frame = _empty_summary(rows, keys, per_task)
    for (row, col, part), r in agg.iterrows():
        key = (col, part) if per_task else (col,)
        frame.loc[row, (*key, "mean")] = r["mean"]
        frame.loc[row, (*key, "std")] = r["std"]
        frame.loc[row, (*key, "n")] = int(r["count"])
    frame = frame.dropna(how="all", subset=[(*k, "mean") for k in keys])
    return _add_avg(frame, columns, per_task)


def _paper_rows(
    table_no: int, columns: list[str], keys: list[tuple], methods: set[str], per_task: bool
) -> pd.DataFrame:
    """Published numbers laid out like ``summarize`` (index ``<row> (paper)``)."""
    ref = paper_reference(table_no)
    ref = ref[ref["method"].isin(methods)]
    labels = [f"{r} (paper)" for r in dict.fromkeys(ref["row"])]
    frame = _empty_summary(labels, keys, per_task)
    for _, r in ref.iterrows():
        for key in keys:
            col, part = key[0], (key[1] if per_task else MERGE)
            if table_no == 2:
                hit = part == MERGE and DATASET_ALIASES.get(col, col) == r["dataset"]
            else:
                hit = part == r["dataset"]
            if hit:
                frame.loc[f"{r['row']} (paper)", (*key, "mean")] = r["mean"]
                frame.loc[f"{r['row']} (paper)", (*key, "std")] = r["std"]
    frame = frame.dropna(how="all", subset=[(*k, "mean") for k in keys])
    return _add_avg(frame, columns, per_task)


# ------------------------------------------------------------------------- table


@dataclass
class Table:
    """A summarised table with everything the formatters need."""

    summary: pd.DataFrame  # display order; suite rows then paper rows; values in %
    methods: dict[str, str]  # row label -> method
    unranked: list[str]  # suite reference rows (shown first, not ranked)
    paper_rows: list[str] = field(default_factory=list)
    marks: dict[tuple, str] = field(default_factory=dict)  # (row, cell key) -> best|second
    daggers: set[tuple] = field(default_factory=set)  # (row, cell key): not sig. different
    failed: dict[tuple, list] = field(default_factory=dict)  # (row, cell key) -> failed seeds
    tests: dict[tuple, dict[str, stats.PairedTest]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    max_n: int = 0
    per_task: bool = False

    @property
    def cell_keys(self) -> list[tuple]:
        return list(dict.fromkeys(c[:-1] for c in self.summary.columns))


def _rank(table: Table, ranked: list[str]) -> None:
    """Bold the best, underline the second best (by the 2-decimal mean) in each column."""
    for key in table.cell_keys:
        means = table.summary.loc[ranked, (*key, "mean")].dropna().round(2)
        levels = sorted(set(means), reverse=True)
        for row, m in means.items():
            if m == levels[0]:
                table.marks[(row, key)] = "best"
            elif len(levels) > 1 and m == levels[1]:
                table.marks[(row, key)] = "second"


def _significance(
    table: Table, long: pd.DataFrame, ranked: list[str], test: str, alpha: float
) -> list[str]:
    """Paired tests of every ranked row against its column's best; returns note lines."""
    for key in table.cell_keys:
        if key[0] == AVG:
            continue
        part = key[1] if table.per_task else ""
        cell = long[(long["column"] == key[0]) & (long["part"] == part)]
        values = {
            row: dict(zip(g["seed"], g["value"])) for row, g in cell.groupby("row") if row in ranked
        }
        best = next((r for r in ranked if table.marks.get((r, key)) == "best"), None)
        if best is None or best not in values:
            continue
        others = {r: v for r, v in values.items() if table.marks.get((r, key)) != "best"}
        results = stats.compare_to_best(others | {best: values[best]}, best, test, alpha)
        table.tests[key] = results
        for row, res in results.items():
            if res.testable and not res.significant(alpha):
                table.daggers.add((row, key))
    results = [r for per_key in table.tests.values() for r in per_key.values()]
    if not results:
        return []
    tested = [r for r in results if r.testable]
    reasons = Counter(r.reason for r in results if not r.testable)
    name = stats.TESTS[test]
    if not tested:
        return [f"{reason[0].upper()}{reason[1:]}; no significance marks." for reason in reasons]
    lines = [
        f"†: not significantly different from the best of its column "
        f"(two-sided {name} over seeds, paired by seed, p ≥ {alpha:g})."
    ]
    if reasons:
        detail = "; ".join(
            f"{reason} ({k} comparison{'s' if k > 1 else ''})" for reason, k in reasons.items()
        )
        lines.append(f"Not tested: {detail}.")
    return lines


def build_table(
    df: pd.DataFrame,
    metric: str = "test_acc",
    per_task: bool = False,
    exclude: Sequence[str] = DEFAULT_REFERENCE_METHODS,
    test: str = "ttest",
    alpha: float = 0.05,
    reference: str | None = None,
    n_failed: int = 0,
    failures: pd.DataFrame | None = None,
) -> Table:
    """Summarise ``df`` and decide ordering, emphasis, daggers and the footnote lines.

    ``failures`` (:func:`failures_frame`): the failed runs; each affected cell gets a ‡
    and ``(n=k)`` (its finished seeds), and a note names the failed seeds and why.

    Rows whose method is in ``exclude`` are shown first and not ranked. ``reference``:
    None, ``"paper"`` (= ``"paper:2"``, matched by dataset id) or ``"paper:5"`` (T1/T2/Merge)
    appends the published numbers as unranked ``(paper)`` rows.
    """
    if df.empty:
        raise ValueError("no finished runs to tabulate")
    if stats.TESTS.get(test) is None:
        raise ValueError(f"unknown test {test!r}; expected one of {sorted(stats.TESTS)}")
    table_no = _parse_reference(reference)
    summary = summarize(df, metric, per_task)
    if summary.empty:
        raise ValueError(f"no {metric} values to tabulate")
    methods = df.groupby("row")["method"].first().to_dict()
    rows = list(summary.index)
    unranked = [r for r in rows if methods.get(r) in set(exclude)]
    ranked = [r for r in rows if r not in unranked]
    summary = summary.loc[unranked + ranked]
    n_cols = [c for c in summary.columns if c[-1] == "n" and c[0] != AVG]
    max_n = int(summary[n_cols].max().max()) if n_cols else 0
    table = Table(summary, methods, unranked, max_n=max_n, per_task=per_task)
    _rank(table, ranked)
    long = per_seed_values(df, metric, per_task)
    sig_lines = _significance(table, long, ranked, test, alpha)

    columns = list(dict.fromkeys(k[0] for k in table.cell_keys if k[0] != AVG))
    if table_no is not None:
        keys = [k for k in table.cell_keys if k[0] != AVG]
        paper = _paper_rows(table_no, columns, keys, set(methods.values()), per_task)
        table.summary = pd.concat([table.summary, paper[table.summary.columns]])
        table.paper_rows = list(paper.index)
        for r in table.paper_rows:
            table.methods[r] = "paper"

    short = (table.summary[n_cols] < max_n).fillna(False).to_numpy().any() if n_cols else False
    what = METRIC_TEXT.get(metric, metric)
    notes = [
        f"Values: {what} in %, mean ± sample standard deviation (ddof=1) over seeds"
        + (f"; (n=k): only k of {max_n} seeds finished." if short else ".")
    ]
    if per_task:
        notes.append("T1…TN: accuracy on each teacher's test classes; Merge: over all classes.")
    ranking = "Bold: best; underlined: second best in each column"
    if unranked:
        ranking += f"; not ranked: the reference rows ({', '.join(unranked)})"
    notes.append(ranking + ".")
    notes += sig_lines
    if any(k[0] == AVG for k in table.cell_keys):
        notes.append(f"{AVG}: mean over datasets of the per-row means (no std, not tested).")
    if failures is not None:
        n_failed = len(failures)
        notes += _mark_failures(table, failures)
    elif n_failed:
        notes.append(f"{n_failed} failed run{'s' if n_failed != 1 else ''} not included.")
    notes += _collapse_notes(df)
    if table_no is not None:
        if table.paper_rows:
            cols = " (T1 = Stanford Cars, T2 = FGVC-Aircraft)" if table_no == 5 else ""
            notes.append(
                f"(paper): published mean ± std, Table {table_no} of {PAPER}{cols}; not ranked."
            )
        else:
            notes.append(
                f"No published numbers of Table {table_no} of {PAPER} match these columns."
            )
    table.notes = notes
    return table


def _collapse_notes(df: pd.DataFrame) -> list[str]:
    """A footnote naming the cells with runs whose validation accuracy fell for
    ``COLLAPSE_FALLS`` or more epochs in a row, by ``COLLAPSE_DROP`` or more in all
    (``val_falls``, ``val_fall_drop``; bench.health)."""
    if "val_falls" not in df or "val_fall_drop" not in df:
        return []
    flags = [is_collapsing(f, d) for f, d in zip(df["val_falls"], df["val_fall_drop"])]
    bad = df[pd.Series(flags, index=df.index, dtype=bool)]
    if bad.empty:
        return []
    cells = []
    for (row, column), g in bad.groupby(["row", "column"], sort=False):
        seeds = ", ".join(str(s) for s in sorted(g["seed"]))
        cells.append(f"{row} / {column} (seed{'s' if len(g) > 1 else ''} {seeds})")
    return [
        f"Possible collapse: validation accuracy fell {COLLAPSE_FALLS}+ epochs in a row, by "
        f"{COLLAPSE_DROP * 100:g}+ points, in " + "; ".join(cells) + "."
    ]


def _error_kind(error: Any) -> str:
    """``NonFiniteLoss: epoch 3 ...`` -> ``NonFiniteLoss`` (the error's type), else the
    start of the message."""
    text = " ".join(str(error or "error").split())
    head = text.split(":", 1)[0].strip()
    return head if head.isidentifier() else text[:40]


def _mark_failures(table: Table, failures: pd.DataFrame, limit: int = 8) -> list[str]:
    """‡ on every cell of ``table`` that lost seeds to failed runs; the note lines."""
    if failures.empty:
        return []
    cells: dict[tuple[str, str], list[tuple[Any, str]]] = {}
    for _, f in failures.iterrows():
        cells.setdefault((f["row"], f["column"]), []).append((f["seed"], _error_kind(f["error"])))
    for (row, column), lost in cells.items():
        for key in table.cell_keys:
            if key[0] == column and row in table.summary.index:
                table.failed[(row, key)] = sorted(seed for seed, _ in lost)
    parts = []
    for (row, column), lost in list(cells.items())[:limit]:
        seeds = ", ".join(str(seed) for seed, _ in sorted(lost, key=lambda x: str(x[0])))
        kinds = ", ".join(sorted({kind for _, kind in lost}))
        word = "seeds" if len(lost) > 1 else "seed"
        parts.append(f"{row} / {column}: {word} {seeds} ({kinds})")
    more = f"; and {len(cells) - limit} more cells" if len(cells) > limit else ""
    n = len(failures)
    return [
        f"‡: {n} failed run{'s' if n != 1 else ''} not included, (n=k) seeds remain: "
        + "; ".join(parts)
        + more
        + "."
    ]


# -------------------------------------------------------------------- formatting

_LATEX_CHARS = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "<": r"$<$",
    ">": r"$>$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "≥": r"$\geq$",
    "…": r"\ldots{}",
    "×": r"$\times$",
    "α": r"$\alpha$",
}


def latex_escape(text: Any) -> str:
    """Plain text -> LaTeX text (special characters and the few symbols used in notes)."""
    return "".join(_LATEX_CHARS.get(ch, ch) for ch in str(text))


def _latex_caption(text: str) -> str:
    """Escape unescaped ``% _ & #`` in a caption but keep the user's LaTeX markup."""
    return re.sub(r"(?<!\\)([%_&#])", r"\\\1", text)


def _latex_label(text: str) -> str:
    """A safe ``\\label`` key."""
    return re.sub(r"[^A-Za-z0-9:._/-]", "-", text)


def _cell(table: Table, row: str, key: tuple, fmt: str) -> str:
    s = table.summary.loc[row]
    mean, std, n = s[(*key, "mean")], s[(*key, "std")], s[(*key, "n")]
    if pd.isna(mean):
        lost = "$^\\ddagger$" if fmt == "latex" else "‡"
        return ("--" if fmt == "latex" else "–") + (lost if (row, key) in table.failed else "")
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    text = f"{mean:.2f}" + ("" if pd.isna(std) else f"{pm}{std:.2f}")
    mark = table.marks.get((row, key))
    if mark == "best":
        text = f"\\textbf{{{text}}}" if fmt == "latex" else f"**{text}**"
    elif mark == "second":
        text = f"\\underline{{{text}}}" if fmt == "latex" else f"<u>{text}</u>"
    if (row, key) in table.daggers:
        text += "$^\\dagger$" if fmt == "latex" else "†"
    if (row, key) in table.failed:
        text += "$^\\ddagger$" if fmt == "latex" else "‡"
    if not pd.isna(n) and (int(n) < table.max_n or (row, key) in table.failed):
        text += f" (n={int(n)})"
    return text


def _display(table: Table, fmt: str) -> pd.DataFrame:
    """Strings for every cell; column labels escaped for ``fmt``."""
    esc = latex_escape if fmt == "latex" else (lambda s: str(s).replace("|", "\\|"))
    keys = table.cell_keys
    data = {
        ("Method", "") if table.per_task else ("Method",): [esc(r) for r in table.summary.index]
    }
    for key in keys:
        data[tuple(esc(k) for k in key)] = [_cell(table, r, key, fmt) for r in table.summary.index]
    disp = pd.DataFrame(data)
    if fmt == "latex" and table.per_task:
        disp.columns = pd.MultiIndex.from_tuples(list(data))
    else:
        disp.columns = [" ".join(k for k in c if k) for c in data]
    return disp


def _cmidrules(keys: list[tuple]) -> str:
    """``\\cmidrule`` under each multi-column dataset header (column 1 is Method)."""
    rules, start = [], 2
    for col in dict.fromkeys(k[0] for k in keys):
        width = sum(1 for k in keys if k[0] == col)
        if width > 1:
            rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return " ".join(rules)


def to_latex(table: Table, caption: str | None = None, label: str | None = None) -> str:
    """LaTeX ``table`` (booktabs rules, via ``pandas.Styler.to_latex``) with footnotes."""
    disp = _display(table, "latex")
    styler = disp.style.hide(axis="index")
    latex = styler.to_latex(
        column_format="l" + "c" * (disp.shape[1] - 1),
        hrules=True,
        position_float="centering",
        multicol_align="c",
        caption=_latex_caption(caption) if caption else None,
        label=_latex_label(label) if label else None,
    )
    lines = latex.splitlines()
    starts = []
    if table.unranked and len(table.unranked) < len(table.summary) - len(table.paper_rows):
        starts.append(latex_escape(table.summary.index[len(table.unranked)]))
    if table.paper_rows:
        starts.append(latex_escape(table.paper_rows[0]))
    for start in starts:
        i = next(i for i, ln in enumerate(lines) if ln.startswith(start + " & "))
        lines.insert(i, r"\midrule")
    if table.per_task:
        top = lines.index(r"\toprule") + 1
        lines.insert(top + 1, _cmidrules(table.cell_keys))
    end = lines.index(r"\end{table}")
    notes = [r"\par\smallskip", r"{\footnotesize\raggedright"]
    notes += [latex_escape(n) + r"\par" for n in table.notes] + ["}"]
    lines[end:end] = notes
    return "\n".join(lines) + "\n"


def to_markdown(table: Table, caption: str | None = None) -> str:
    """GitHub Markdown table (``**best**``, ``<u>second</u>``) followed by the notes."""
    disp = _display(table, "markdown")
    body = disp.to_markdown(
        index=False, disable_numparse=True, colalign=["left"] + ["center"] * (disp.shape[1] - 1)
    )
    head = f"**{caption}**\n\n" if caption else ""
    return head + body + "\n\n" + "\n".join(f"- {n}" for n in table.notes) + "\n"


def to_csv(table: Table) -> str:
    """Machine-readable numbers: one row per table row, ``<column>[/<part>]/<stat>`` columns."""
    flat = table.summary.copy()
    flat.columns = ["/".join(str(k) for k in c if k != "") for c in flat.columns]
    flat.insert(0, "source", ["paper" if r in table.paper_rows else "suite" for r in flat.index])
    flat.insert(0, "method", [table.methods.get(r, "") for r in flat.index])
    return flat.reset_index().to_csv(index=False, float_format="%.10g", lineterminator="\n")


# ---------------------------------------------------------------------- commands

FORMATS = {"markdown": ".md", "latex": ".tex", "csv": ".csv"}


def _render(table: Table, fmt: str, caption: str | None, label: str | None) -> str:
    if fmt == "latex":
        return to_latex(table, caption=caption, label=label)
    if fmt == "markdown":
        return to_markdown(table, caption=caption)
    if fmt == "csv":
        return to_csv(table)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")


def render_table(
    suite_dir: Path | str,
    fmt: str = "markdown",
    out: Path | str | None = None,
    per_task: bool = False,
    reference: str | None = None,
    test: str = "ttest",
    alpha: float = 0.05,
    caption: str | None = None,
    label: str | None = None,
    metric: str = "test_acc",
    exclude: Sequence[str] = DEFAULT_REFERENCE_METHODS,
    planned: dict[tuple[str, str, int], str] | None = None,
) -> str:
    """The table of ``suite_dir`` as ``fmt`` (markdown | latex | csv); also written to ``out``.
    ``planned``: leave out runs a current plan supersedes (:func:`drop_superseded`)."""
    records = read_records(suite_dir)
    if planned is not None:
        records = drop_superseded(records, planned)
    df = results_frame(records)
    failures = failures_frame(records)
    if df.empty:
        raise ValueError(f"no finished runs under {_runs_dir(suite_dir)} ({len(failures)} failed)")
    return render_frame(
        df,
        len(failures),
        fmt,
        out,
        per_task,
        reference,
        test,
        alpha,
        caption,
        label,
        metric,
        exclude,
        failures=failures,
    )


def render_frame(
    df: pd.DataFrame,
    n_failed: int = 0,
    fmt: str = "markdown",
    out: Path | str | None = None,
    per_task: bool = False,
    reference: str | None = None,
    test: str = "ttest",
    alpha: float = 0.05,
    caption: str | None = None,
    label: str | None = None,
    metric: str = "test_acc",
    exclude: Sequence[str] = DEFAULT_REFERENCE_METHODS,
    failures: pd.DataFrame | None = None,
) -> str:
    """A tidy results frame (from ``result.json`` files or MLflow) as ``fmt``; also
    written atomically to ``out``. ``failures``: the failed runs, marked in their cells."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    table = build_table(
        df, metric, per_task, exclude, test, alpha, reference, n_failed, failures=failures
    )
    text = _render(table, fmt, caption, label)
    if out is not None:
        atomic_write_text(out, text)
    return text


def drop_superseded(
    records: list[dict[str, Any]], planned: dict[tuple[str, str, int], str]
) -> list[dict[str, Any]]:
    """``records`` without those a current plan supersedes: a record whose (row, column,
    seed) the plan now runs under another run key (the row's method, params or recipe
    changed, e.g. a new default reading) would otherwise be averaged with the new one.
    Cells the plan does not name (seeds left out by ``--seeds``) are kept."""
    return [
        r
        for r in records
        if planned.get((r["row"], r["column"], r["seed"]), r["run_key"]) == r["run_key"]
    ]


def write_suite_tables(
    suite_dir: Path | str,
    planned: dict[tuple[str, str, int], str] | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Write ``table.{md,tex,csv}`` (+ ``table_tasks.*`` when per-task accuracies exist)
    and ``plots/*.png`` into ``suite_dir``; returns {name: path}. ``planned``: the current
    plan's run key per (row, column, seed) (:func:`drop_superseded`). ``options`` go to
    ``build_table`` (metric, exclude, test, alpha, reference)."""
    from bench import plots

    suite_dir = Path(suite_dir)
    records = read_records(suite_dir)
    if planned is not None:
        records = drop_superseded(records, planned)
    df, failures = results_frame(records), failures_frame(records)
    n_failed = len(failures)
    written: dict[str, Path] = {}
    metric = options.get("metric", "test_acc")
    if df.empty or df[metric].isna().all():
        msg = f"No finished runs with {metric} ({n_failed} failed).\n"
        written["table.md"] = atomic_write_text(suite_dir / "table.md", msg)
        return written
    variants = [("table", False)]
    if any(c.startswith(TASK_PREFIX) for c in df.columns):
        variants.append(("table_tasks", True))
    for stem, per_task in variants:
        table = build_table(df, per_task=per_task, failures=failures, **options)
        for fmt, ext in FORMATS.items():
            name = stem + ext
            written[name] = atomic_write_text(suite_dir / name, _render(table, fmt, None, None))
    try:
        for path in plots.write_plots(df, histories_frame(records), suite_dir / "plots"):
            written[f"plots/{path.name}"] = path
    except Exception as err:  # a broken plot must not hide the tables
        warnings.warn(f"plots for {suite_dir} failed: {err!r}", stacklevel=2)
    return written
