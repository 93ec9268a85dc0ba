"""Publication tables from a suite's results: load, summarise over seeds, rank, format.

Flow: :mod:`~bench.report.loading` (result.json files or MLflow -> a tidy frame, one
row per finished run) -> :mod:`~bench.report.aggregate` (mean / sample std / n over
seeds, ordering, best / second best, paired tests, notes, paper rows) ->
:mod:`~bench.report.formats` (LaTeX / Markdown / CSV); :mod:`~bench.report.tables`
holds the entry points of the CLI and the harness."""

from bench.report.aggregate import (
    AVG,
    DEFAULT_REFERENCE_METHODS,
    MERGE,
    Table,
    build_table,
    paper_reference,
    per_seed_values,
    summarize,
)
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
from bench.report.tables import render_frame, render_table, write_suite_tables

__all__ = [
    "AVG",
    "DEFAULT_REFERENCE_METHODS",
    "FORMATS",
    "ID_COLUMNS",
    "MERGE",
    "SCALAR_METRICS",
    "TASK_PREFIX",
    "Table",
    "build_table",
    "drop_superseded",
    "failures_frame",
    "histories_frame",
    "latex_escape",
    "load_failures",
    "load_failures_mlflow",
    "load_histories",
    "load_results",
    "load_results_mlflow",
    "paper_reference",
    "per_seed_values",
    "read_records",
    "render_frame",
    "render_table",
    "results_frame",
    "summarize",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_suite_tables",
]
