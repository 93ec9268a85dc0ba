"""PNG figures of a suite (accuracy bars per dataset, training curves per row) and of
one run (its training curves, an MLflow artifact).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend);
every file is written atomically (:mod:`bench.core.atomic`).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.core.atomic import atomic_write_bytes
from bench.core.record import RunRecord
from bench.report.loading import ID_COLUMNS, histories_frame

log = logging.getLogger(__name__)

REFERENCE_METHODS = ("supervised", "teacher")
SKIP_CURVES = {"epoch", "epoch_time", "data_time", "step_time", "lr"}


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    """``fig`` rendered as PNG."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, path: Path | str, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG at ``path`` atomically."""
    return atomic_write_bytes(path, figure_png(fig, dpi))


def slug(text: str) -> str:
    """A file-name-safe lower-case form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "row"


def _ordered(df: pd.DataFrame, name: str) -> list:
    first = df.groupby(name, sort=False)[f"{name}_order"].min()
    return sorted(first.index, key=lambda k: (first[k], str(k)))


def accuracy_bars(
    df: pd.DataFrame,
    metric: str = "test_acc",
    reference_methods: Sequence[str] = REFERENCE_METHODS,
) -> Figure:
    """One panel per dataset column: mean ``metric`` (%) per row, error bars = sample std."""
    columns, rows = _ordered(df, "column"), _ordered(df, "row")
    methods = df.groupby("row")["method"].first()
    fig = Figure(figsize=(max(4.0, 0.55 * len(rows) + 1.5) * len(columns), 3.8))
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, col in zip(axes, columns):
        sub = df[df["column"] == col].groupby("row")[metric]
        mean = sub.mean().reindex(rows) * 100
        std = sub.std(ddof=1).reindex(rows).fillna(0) * 100
        colors = ["0.65" if methods.get(r) in reference_methods else "C0" for r in rows]
        ax.bar(range(len(rows)), mean.fillna(0), yerr=std, color=colors, capsize=3)
        ax.set_xticks(range(len(rows)), [str(r) for r in rows], rotation=45, ha="right")
        ax.set_title(str(col))
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
        if mean.notna().any():
            low = max(0.0, float((mean - std).min()) - 5)
            ax.set_ylim(low, min(100.0, float((mean + std).max()) + 2))
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, row: str) -> Figure | None:
    """Panels per logged term (loss terms, val_acc) vs epoch for ``row``, mean over seeds,
    one line per dataset column with a ±1 std band; None if nothing was logged."""
    sub = history[history["row"] == row]
    terms = [
        c
        for c in sub.columns
        if c not in SKIP_CURVES
        and c not in ID_COLUMNS
        and pd.api.types.is_numeric_dtype(sub[c])
        and sub[c].notna().any()
    ]
    if sub.empty or not terms:
        return None
    fig = Figure(figsize=(3.2 * len(terms), 2.8))
    axes = fig.subplots(1, len(terms), squeeze=False)[0]
    for ax, term in zip(axes, terms):
        for col in _ordered(sub, "column"):
            g = sub[sub["column"] == col].groupby("epoch")[term]
            mean, std = g.mean(), g.std(ddof=1).fillna(0)
            ax.plot(mean.index, mean.values, label=str(col))
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if sub["column"].nunique() > 1:
        axes[0].legend(fontsize="small")
    fig.suptitle(str(row))
    fig.tight_layout()
    return fig


def write_plots(results: pd.DataFrame, history: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """``accuracy.png`` and ``curves_<row_order>_<row>.png`` per row with history."""
    out_dir = Path(out_dir)
    written = []
    if not results.empty and results["test_acc"].notna().any():
        written.append(save_figure(accuracy_bars(results), out_dir / "accuracy.png"))
    if not history.empty:
        for row in _ordered(history, "row"):
            fig = training_curves(history, row)
            if fig is None:
                continue
            order = history.loc[history["row"] == row, "row_order"].min()
            prefix = f"{int(order):02d}_" if pd.notna(order) and order != float("inf") else ""
            written.append(save_figure(fig, out_dir / f"curves_{prefix}{slug(row)}.png"))
    return written


def run_figures(record: RunRecord) -> dict[str, bytes]:
    """The figures of one finished run's record, by file name: ``curves.png`` (its loss
    terms and val_acc per epoch) when it has a history. A figure that cannot be drawn is
    left out, with a warning: a missing plot never fails a run or its tracking."""
    history = histories_frame([record])
    if history.empty:
        return {}
    try:
        fig = training_curves(history, record.row)
        return {} if fig is None else {"curves.png": figure_png(fig)}
    except Exception as exc:  # noqa: BLE001
        log.warning("curves for %s not drawn: %s: %s", record.run_key, type(exc).__name__, exc)
        return {}
