"""Summaries over seeds and the decisions of a table: per-seed values, mean / std / n,
ranking, paired significance tests, published reference rows (a study's printed tables,
:mod:`bench.report.published`), and the notes (failed runs, possible collapse)."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.engine.health import COLLAPSE_DROP, COLLAPSE_FALLS, is_collapsing
from bench.report.loading import TASK_PREFIX, task_order
from bench.report.published import PublishedTable, resolve_reference
from bench.report.stats import TESTS, PairedTest, compare_to_best

DEFAULT_REFERENCE_METHODS = ("supervised", "teacher")
MERGE = "Merge"
AVG = "Avg."
STATS = ("mean", "std", "n")
METRIC_TEXT = {
    "test_acc": "union top-1 test accuracy (last epoch)",
    "val_acc": "validation accuracy",
    "test_acc_at_best_val": "test accuracy at the best-validation epoch",
    "test_acc@best-val": "union top-1 test accuracy at each run's best-validation epoch",
    "test_acc@best-test": "union top-1 test accuracy at each run's best-test epoch",
}


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
        for c in sorted((c for c in df if c.startswith(TASK_PREFIX)), key=task_order):
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
        tasks = sorted((p for p in parts if p != MERGE), key=task_order)
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
    published: PublishedTable,
    columns: list[str],
    keys: list[tuple],
    methods: set[str],
    per_task: bool,
) -> pd.DataFrame:
    """Published numbers laid out like ``summarize`` (index ``<row> (paper)``)."""
    ref = published.numbers
    ref = ref[ref["method"].isin(methods)]
    labels = [f"{r} (paper)" for r in dict.fromkeys(ref["row"])]
    frame = _empty_summary(labels, keys, per_task)
    for _, r in ref.iterrows():
        for key in keys:
            col, part = key[0], (key[1] if per_task else MERGE)
            if published.by_task:
                hit = part == r["dataset"]
            else:
                hit = part == MERGE and published.aliases.get(col, col) == r["dataset"]
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
    tests: dict[tuple, dict[str, PairedTest]] = field(default_factory=dict)
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
        results = compare_to_best(others | {best: values[best]}, best, test, alpha)
        table.tests[key] = results
        for row, res in results.items():
            if res.testable and not res.significant(alpha):
                table.daggers.add((row, key))
    results = [r for per_key in table.tests.values() for r in per_key.values()]
    if not results:
        return []
    tested = [r for r in results if r.testable]
    reasons = Counter(r.reason for r in results if not r.testable)
    name = TESTS[test]
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
    extra_notes: Sequence[str] = (),
) -> Table:
    """Summarise ``df`` and decide ordering, emphasis, daggers and the footnote lines.

    ``failures`` (:func:`failures_frame`): the failed runs; each affected cell gets a ‡
    and ``(n=k)`` (its finished seeds), and a note names the failed seeds and why.

    Rows whose method is in ``exclude`` are shown first and not ranked. ``reference``:
    None, ``"paper"`` (= ``"paper:2"``, matched by dataset id) or ``"paper:5"`` (T1/T2/Merge)
    appends the published numbers as unranked ``(paper)`` rows. ``extra_notes``: lines
    appended to the footnote (e.g. the selection protocol).
    """
    if df.empty:
        raise ValueError("no finished runs to tabulate")
    if TESTS.get(test) is None:
        raise ValueError(f"unknown test {test!r}; expected one of {sorted(TESTS)}")
    published = resolve_reference(reference)
    table, ranked = _ranked_table(df, metric, per_task, exclude)
    sig_lines = _significance(table, per_seed_values(df, metric, per_task), ranked, test, alpha)
    if published is not None:
        _add_paper_rows(table, published, per_task)
    notes = _value_notes(table, metric, per_task) + sig_lines
    if any(k[0] == AVG for k in table.cell_keys):
        notes.append(f"{AVG}: mean over datasets of the per-row means (no std, not tested).")
    if failures is not None:
        notes += _mark_failures(table, failures)
    elif n_failed:
        notes.append(f"{n_failed} failed run{'s' if n_failed != 1 else ''} not included.")
    notes += _collapse_notes(df)
    if published is not None:
        notes.append(_paper_note(table, published))
    table.notes = notes + list(extra_notes)
    return table


def _ranked_table(
    df: pd.DataFrame, metric: str, per_task: bool, exclude: Sequence[str]
) -> tuple[Table, list[str]]:
    """The summary in display order (the ``exclude``d reference rows first, unranked),
    its best and second best marked; and the ranked rows."""
    summary = summarize(df, metric, per_task)
    if summary.empty:
        raise ValueError(f"no {metric} values to tabulate")
    methods = df.groupby("row")["method"].first().to_dict()
    rows = list(summary.index)
    unranked = [r for r in rows if methods.get(r) in set(exclude)]
    ranked = [r for r in rows if r not in unranked]
    summary = summary.loc[unranked + ranked]
    n_cols = _n_columns(summary)
    max_n = int(summary[n_cols].max().max()) if n_cols else 0
    table = Table(summary, methods, unranked, max_n=max_n, per_task=per_task)
    _rank(table, ranked)
    return table, ranked


def _n_columns(summary: pd.DataFrame) -> list:
    """The seed-count columns of a summary (not the average's)."""
    return [c for c in summary.columns if c[-1] == "n" and c[0] != AVG]


def _add_paper_rows(table: Table, published: PublishedTable, per_task: bool) -> None:
    """The ``published`` numbers as unranked rows."""
    keys = [k for k in table.cell_keys if k[0] != AVG]
    columns = list(dict.fromkeys(k[0] for k in keys))
    paper = _paper_rows(published, columns, keys, set(table.methods.values()), per_task)
    table.summary = pd.concat([table.summary, paper[table.summary.columns]])
    table.paper_rows = list(paper.index)
    for r in table.paper_rows:
        table.methods[r] = "paper"


def _value_notes(table: Table, metric: str, per_task: bool) -> list[str]:
    """The footnote's first lines: what the values are, the per-task columns, the marks."""
    n_cols = _n_columns(table.summary)
    short = (
        (table.summary[n_cols] < table.max_n).fillna(False).to_numpy().any() if n_cols else False
    )
    what = METRIC_TEXT.get(metric, metric)
    notes = [
        f"Values: {what} in %, mean ± sample standard deviation (ddof=1) over seeds"
        + (f"; (n=k): only k of {table.max_n} seeds finished." if short else ".")
    ]
    if per_task:
        notes.append("T1…TN: accuracy on each teacher's test classes; Merge: over all classes.")
    ranking = "Bold: best; underlined: second best in each column"
    if table.unranked:
        ranking += f"; not ranked: the reference rows ({', '.join(table.unranked)})"
    notes.append(ranking + ".")
    return notes


def _paper_note(table: Table, published: PublishedTable) -> str:
    if table.paper_rows:
        cols = published.columns_note
        return f"(paper): published mean ± std, {published.title}{cols}; not ranked."
    return f"No published numbers of {published.title} match these columns."


def _collapse_notes(df: pd.DataFrame) -> list[str]:
    """A footnote naming the cells with runs whose validation accuracy fell for
    ``COLLAPSE_FALLS`` or more epochs in a row, by ``COLLAPSE_DROP`` or more in all
    (``val_falls``, ``val_fall_drop``; bench.engine.health)."""
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
