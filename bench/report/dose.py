"""Dose-response of a loss term: each value of a ``sweep:`` weight against the reference
row (paired by seed, 95 % t interval: :func:`bench.report.effects.effects_frame`), on the
validation and the test split, one plot per swept term and column.

A sweep is given as ``{value: row}`` (:func:`bench.experiment.plan.dose_points`): the rows that
hold each value of the weight, a value equal to another row's run (``lambda_inter: 1``
is the default CKA row) pointing at that row.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.report.effects import effects_frame

SPLITS = {"val": "val_acc", "test": "test_acc"}


def split_effects(df: pd.DataFrame, reference: str) -> dict[str, pd.DataFrame]:
    """Every row against ``reference`` on each split (:func:`effects_frame`); raises
    ValueError when ``reference`` is not a row of ``df``."""
    return {split: effects_frame(df, reference, metric=m) for split, m in SPLITS.items()}


def dose_frame(effects: Mapping[str, pd.DataFrame], points: Mapping[float, str]) -> pd.DataFrame:
    """One line per (column, value, split): the mean paired difference to the reference
    in points with its 95 % CI and n (columns column, value, split, row, n, mean,
    ci_low, ci_high), from :func:`split_effects`."""
    parts = []
    for split, eff in effects.items():
        for value, row in points.items():
            sel = eff[eff["row"] == row]
            parts.append(sel.assign(value=float(value), split=split))
    if not parts:
        return pd.DataFrame(columns=["column", "value", "split", "row", "n", "mean"])
    out = pd.concat(parts, ignore_index=True)
    cols = ["column", "value", "split", "row", "n", "mean", "ci_low", "ci_high"]
    return out[cols].sort_values(["column", "split", "value"], kind="stable")


def dose_figure(frame: pd.DataFrame, term: str, column: str, reference: str):
    """Difference to ``reference`` (val and test, 95 % band) against the weight of
    ``term`` on a symmetric-log axis (0, the term off, stays on the axis)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    sub = frame[frame["column"] == column]
    positive = sorted(v for v in sub["value"].unique() if v > 0)
    ax.set_xscale("symlog", linthresh=positive[0] if positive else 1.0)
    for split, style in (("test", "s-"), ("val", "o--")):  # val on top: drawn last
        s = sub[sub["split"] == split].dropna(subset=["mean"])
        if s.empty:
            continue
        line = ax.plot(s["value"], s["mean"], style, label=split)[0]
        band = s.dropna(subset=["ci_low", "ci_high"])
        ax.fill_between(band["value"], band["ci_low"], band["ci_high"], alpha=0.2,
                        color=line.get_color(), linewidth=0)  # fmt: skip
    values = sorted(sub["value"].unique())
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlabel(f"{term} (symlog; 0 = term off)")
    ax.set_ylabel(f"accuracy - {reference} (points)")
    ax.set_title(f"{column}: dose-response of {term} (95 % CI, paired by seed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_dose_plots(
    df: pd.DataFrame,
    doses: Mapping[tuple[int, str], Mapping[float, str]],
    reference: str,
    out_dir: Path | str,
) -> list[Path]:
    """``dose_<term>_<column>.png`` (and ``dose.csv``, every point) for every sweep and
    column into ``out_dir``; nothing when the plan has no sweep or no reference row."""
    from bench.core.atomic import atomic_write_text
    from bench.report.plots import save_figure, slug

    if not doses or df.empty or reference not in set(df["row"]):
        return []
    out_dir = Path(out_dir)
    effects = split_effects(df, reference)
    written, frames = [], []
    terms = [term for _, term in doses]
    for (entry, term), points in doses.items():
        frame = dose_frame(effects, points).assign(term=term, entry=entry)
        frames.append(frame)
        name = term if terms.count(term) == 1 else f"{term}-{entry}"
        for column in frame["column"].unique():
            fig = dose_figure(frame, term, column, reference)
            written.append(save_figure(fig, out_dir / f"dose_{slug(name)}_{slug(column)}.png"))
    csv = pd.concat(frames, ignore_index=True).to_csv(index=False, float_format="%.4f")
    atomic_write_text(out_dir / "dose.csv", csv)
    return [*written, out_dir / "dose.csv"]
