"""Which epoch's test accuracy a run reports: the selection protocol.

``last``: the final weights (``metrics.test_acc``, what the harness reports).
``best-val``: the epoch of the highest validation accuracy, the first on ties (the rule
of ``bench.engine.train.keep_best``): its ``curve_test_acc`` when the history records a test
curve, else ``metrics.test_acc_at_best_val`` (the runner's test of the best-val weights).
``best-test``: the highest ``curve_test_acc`` of the history: the epoch is chosen on the
test split, so the number is optimistic (what several peers report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bench.core.record import RunRecord
from bench.report.loading import results_frame

PROTOCOLS = ("last", "best-val", "best-test")
CURVE = "curve_test_acc"
PROTOCOL_TEXT = {
    "last": "last: each run's final epoch (the harness's protocol)",
    "best-val": "best-val: each run's epoch of highest validation accuracy (first on ties)",
    "best-test": "best-test: each run's epoch chosen on the test split — optimistic, "
    "not a valid estimate of generalisation",
}


class SelectionUnavailable(ValueError):
    """A run (or several) lacks what a selection protocol reads."""


class MissingTestCurve(SelectionUnavailable):
    """``best-test`` on a run recorded without a per-epoch test curve."""


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown selection {protocol!r}; expected one of {list(PROTOCOLS)}")


def _where(record: RunRecord) -> str:
    return f"{record.row} / {record.column} / seed {record.seed}"


def _number(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _entries(record: RunRecord) -> list[dict[str, Any]]:
    return [h for h in record.history if isinstance(h, dict) and "epoch" in h]


def _best_val_entry(record: RunRecord) -> dict[str, Any] | None:
    """The history entry ``keep_best`` keeps: strictly higher val_acc wins, so the first."""
    best = None
    for entry in _entries(record):
        val = _number(entry.get("val_acc"))
        if val is not None and (best is None or val > best[0]):
            best = (val, entry)
    return None if best is None else best[1]


def _best_test_entry(record: RunRecord) -> dict[str, Any]:
    best = None
    for entry in _entries(record):
        acc = _number(entry.get(CURVE))
        if acc is not None and (best is None or acc > best[0]):
            best = (acc, entry)
    if best is None:
        raise MissingTestCurve(f"{_where(record)}: no per-epoch test curve ({CURVE})")
    return best[1]


def select_test_acc(record: RunRecord, protocol: str) -> float:
    """The test accuracy (a fraction) ``record`` reports under ``protocol`` (module doc).
    Raises :class:`MissingTestCurve` for ``best-test`` without a curve and
    :class:`SelectionUnavailable` for ``best-val`` without a validation history."""
    _check(protocol)
    metrics = record.metrics
    if protocol == "last" or not _entries(record):  # a row that trains nothing: no epochs
        acc = _number(metrics.test_acc)
        return math.nan if acc is None else acc
    if protocol == "best-test":
        return float(_best_test_entry(record)[CURVE])
    entry = _best_val_entry(record)
    acc = None if entry is None else _number(entry.get(CURVE))
    if acc is None:
        acc = _number(metrics.test_acc_at_best_val)
    if acc is None:
        raise SelectionUnavailable(
            f"{_where(record)}: no validation history (test_acc_at_best_val) to select on"
        )
    return acc


def selected_epoch(record: RunRecord, protocol: str) -> int | None:
    """The epoch ``protocol`` picks in ``record``'s history (None when it has none)."""
    _check(protocol)
    if protocol == "last":
        entries = _entries(record)
        return int(entries[-1]["epoch"]) if entries else None
    if protocol == "best-val":
        entry = _best_val_entry(record)
        if entry is None:
            epoch = record.metrics.best_val_epoch
            return None if epoch is None else int(epoch)
        return int(entry["epoch"])
    try:
        return int(_best_test_entry(record)["epoch"])
    except MissingTestCurve:
        return None


def selected_column(protocol: str) -> str:
    """The results-frame column holding the accuracy of ``protocol``."""
    _check(protocol)
    return "test_acc" if protocol == "last" else f"test_acc@{protocol}"


def _finished(records: Iterable[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.finished]


def selected_frame(records: Iterable[RunRecord], protocol: str) -> pd.DataFrame:
    """``results_frame(records)`` plus the column :func:`selected_column` (a fraction per
    run). Raises :class:`SelectionUnavailable` (:class:`MissingTestCurve` for best-test)
    saying how many runs lack what ``protocol`` reads, with one of them as example."""
    _check(protocol)
    finished = _finished(records)
    df = results_frame(finished)
    if protocol == "last":
        return df
    values, missing = [], []
    for rec in finished:
        try:
            values.append(select_test_acc(rec, protocol))
        except SelectionUnavailable:
            values.append(math.nan)
            missing.append(rec)
    if missing:
        k, n = len(missing), len(finished)
        if protocol == "best-test":
            raise MissingTestCurve(
                f"--select best-test: {k} of {n} finished runs have no per-epoch test curve "
                f"(e.g. {_where(missing[0])}); set record_test_curve: true and re-run"
            )
        raise SelectionUnavailable(
            f"--select best-val: {k} of {n} finished runs have no validation history "
            f"(e.g. {_where(missing[0])}); give the suite a validation split and re-run"
        )
    return df.assign(**{selected_column(protocol): values})


def protocols_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Per (row, column), in points: n (seeds), the mean over seeds under ``last``,
    ``best_val`` and ``best_test`` (NaN where a seed lacks what the protocol reads) and
    ``inflation`` = best_test - last. Rows and columns in ``row_order`` / ``column_order``."""
    finished = _finished(records)
    out = ["row", "column", "n", "last", "best_val", "best_test", "inflation"]
    if not finished:
        return pd.DataFrame(columns=out)
    df = results_frame(finished)
    for protocol in PROTOCOLS:
        picked = []
        for rec in finished:
            try:
                picked.append(select_test_acc(rec, protocol) * 100.0)
            except SelectionUnavailable:
                picked.append(math.nan)
        df[protocol.replace("-", "_")] = picked
    names = ["last", "best_val", "best_test"]
    per_seed = df.groupby(["row", "column", "seed"], sort=False)[names].mean().reset_index()
    groups = per_seed.groupby(["row", "column"], sort=False)
    means = groups[names].agg(lambda s: s.mean(skipna=False))
    means["n"] = groups["last"].count()
    means["inflation"] = means["best_test"] - means["last"]
    rank = {name: df.groupby(name)[f"{name}_order"].min().to_dict() for name in ("row", "column")}
    means = means.reset_index()

    def key(i: int) -> tuple:
        row, col = means.at[i, "row"], means.at[i, "column"]
        return (rank["row"][row], str(row), rank["column"][col], str(col))

    return means.loc[sorted(means.index, key=key), out].reset_index(drop=True)
