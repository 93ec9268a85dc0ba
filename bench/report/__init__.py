"""Publication tables from a suite's results: load, summarise over seeds, rank, format.

Flow: :mod:`~bench.report.loading` (result.json files or MLflow -> a tidy frame, one
row per finished run) -> :mod:`~bench.report.aggregate` (mean / sample std / n over
seeds, ordering, best / second best, paired tests, notes, published rows) ->
:mod:`~bench.report.formats` (LaTeX / Markdown / CSV); :mod:`~bench.report.tables`
holds the entry points of the CLI and the harness; :mod:`~bench.report.selection` the
epoch each run reports (last / best-val / best-test); :mod:`~bench.report.effect_tables`
the paired effects against a baseline row (``bench table --effects``, ``bench power``)."""

from bench.report.aggregate import (
    AVG,
    DEFAULT_REFERENCE_METHODS,
    MERGE,
    Table,
    build_table,
    per_seed_values,
    summarize,
)
from bench.report.effect_tables import effects_table, power_table, resolve_baseline
from bench.report.formats import FORMATS, latex_escape, to_csv, to_latex, to_markdown
from bench.report.loading import (
    ID_COLUMNS,
    SCALAR_METRICS,
    TASK_PREFIX,
    drop_superseded,
    failures_frame,
    histories_frame,
    load_failures,
    load_failures_mlflow,
    load_histories,
    load_results,
    load_results_mlflow,
    read_records,
    results_frame,
)
from bench.report.selection import (
    PROTOCOLS,
    MissingTestCurve,
    SelectionUnavailable,
    protocols_frame,
    select_test_acc,
    selected_column,
    selected_epoch,
    selected_frame,
)
from bench.report.tables import render_frame, render_table, write_suite_tables

__all__ = [
    "AVG",
    "DEFAULT_REFERENCE_METHODS",
    "FORMATS",
    "ID_COLUMNS",
    "MERGE",
    "PROTOCOLS",
    "SCALAR_METRICS",
    "TASK_PREFIX",
    "MissingTestCurve",
    "SelectionUnavailable",
    "Table",
    "build_table",
    "drop_superseded",
    "effects_table",
    "failures_frame",
    "histories_frame",
    "latex_escape",
    "load_failures",
    "load_failures_mlflow",
    "load_histories",
    "load_results",
    "load_results_mlflow",
    "per_seed_values",
    "power_table",
    "protocols_frame",
    "read_records",
    "render_frame",
    "render_table",
    "resolve_baseline",
    "results_frame",
    "select_test_acc",
    "selected_column",
    "selected_epoch",
    "selected_frame",
    "summarize",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_suite_tables",
]
