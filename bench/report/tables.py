"""The report's entry points: a suite's table as text (``bench table``), and every
table and plot of a suite written into its folder (the end of ``bench run``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.atomic import atomic_write_text
from bench.report.aggregate import DEFAULT_REFERENCE_METHODS, build_table
from bench.report.formats import FORMATS, render
from bench.report.loading import (
    TASK_PREFIX,
    drop_superseded,
    failures_frame,
    histories_frame,
    read_records,
    results_frame,
    runs_dir,
)
from bench.report.selection import PROTOCOL_TEXT, selected_column, selected_frame


def render_table(
    suite_dir: Path | str,
    fmt: str = "markdown",
    out: Path | str | None = None,
    planned: dict[tuple[str, str, int], str] | None = None,
    select: str = "last",
    **options: Any,
) -> str:
    """The table of ``suite_dir`` as ``fmt`` (markdown | latex | csv); also written to ``out``.
    ``planned``: leave out runs a current plan supersedes (:func:`drop_superseded`).
    ``select``: the epoch whose test accuracy each run reports (:mod:`.selection`); raises
    :class:`~bench.report.selection.SelectionUnavailable` (nothing written) when runs
    lack what it reads. ``options``: :func:`render_frame`'s (per_task, reference, test,
    alpha, caption, label, metric, exclude)."""
    records = read_records(suite_dir)
    if planned is not None:
        records = drop_superseded(records, planned)
    failures = failures_frame(records)
    if not any(r.finished for r in records):
        raise ValueError(f"no finished runs under {runs_dir(suite_dir)} ({len(failures)} failed)")
    notes: list[str] = []
    if select != "last":
        options["metric"] = selection_metric(select, **options)
        notes.append(f"Selection: {PROTOCOL_TEXT[select]}.")
    df = selected_frame(records, select)
    return render_frame(
        df, len(failures), fmt=fmt, out=out, failures=failures, extra_notes=notes, **options
    )


def selection_metric(
    select: str, per_task: bool = False, metric: str = "test_acc", **_: Any
) -> str:
    """The results-frame column a table under ``select`` (not ``last``) reports."""
    if per_task:
        raise ValueError(f"--select {select}: per-task columns are reported for last only")
    if metric != "test_acc":
        raise ValueError(f"--select {select} selects test_acc, not {metric}")
    return selected_column(select)


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
    extra_notes: Sequence[str] = (),
) -> str:
    """A tidy results frame (from ``result.json`` files or MLflow) as ``fmt``; also
    written atomically to ``out``. ``failures``: the failed runs, marked in their cells;
    ``extra_notes``: lines appended to the footnote."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    table = build_table(
        df,
        metric,
        per_task,
        exclude,
        test,
        alpha,
        reference,
        n_failed,
        failures=failures,
        extra_notes=extra_notes,
    )
    text = render(table, fmt, caption, label)
    if out is not None:
        atomic_write_text(out, text)
    return text


def write_suite_tables(
    suite_dir: Path | str,
    planned: dict[tuple[str, str, int], str] | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Write ``table.{md,tex,csv}`` (+ ``table_tasks.*`` when per-task accuracies exist)
    and ``plots/*.png`` into ``suite_dir``; returns {name: path}. ``planned``: the current
    plan's run key per (row, column, seed) (:func:`drop_superseded`). ``options`` go to
    ``build_table`` (metric, exclude, test, alpha, reference)."""
    from bench.report.plots import write_plots

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
            written[name] = atomic_write_text(suite_dir / name, render(table, fmt, None, None))
    try:
        for path in write_plots(df, histories_frame(records), suite_dir / "plots"):
            written[f"plots/{path.name}"] = path
    except Exception as err:  # a broken plot must not hide the tables
        warnings.warn(f"plots for {suite_dir} failed: {err!r}", stacklevel=2)
    return written
