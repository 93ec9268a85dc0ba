"""``bench table --effects`` and ``bench power``: every row against a baseline row,
paired by seed, as effect sizes with confidence intervals, MDE and seeds needed."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from bench.core.atomic import atomic_write_text
from bench.report.aggregate import METRIC_TEXT
from bench.report.effects import effects_frame, power_frame
from bench.report.formats import FORMATS, _latex_caption, _latex_label, latex_escape
from bench.report.loading import read_records, runs_dir
from bench.report.selection import PROTOCOL_TEXT, selected_column, selected_frame

DEFAULT_BASELINE = "Vanilla KD"


def resolve_baseline(suite_dir: Path | str | None, baseline: str | None = None) -> str:
    """``baseline`` if given, else the ``reference:`` of ``<suite_dir>/suite.yaml`` when
    it names one, else ``Vanilla KD``."""
    if baseline is not None:
        return baseline
    path = Path(suite_dir) / "suite.yaml" if suite_dir is not None else None
    if path is not None and path.is_file():
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not YAML ({' '.join(str(err).split())})") from None
        ref = config.get("reference") if isinstance(config, dict) else None
        if isinstance(ref, str) and ref:
            return ref
    return DEFAULT_BASELINE


def _frame(suite_dir: Path | str, select: str) -> tuple[pd.DataFrame, str]:
    records = read_records(suite_dir)
    if not any(r.finished for r in records):
        raise ValueError(f"no finished runs under {runs_dir(suite_dir)}")
    return selected_frame(records, select), selected_column(select)


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def effect_cell(e: pd.Series) -> str:
    """``-0.76 [-1.92, +0.40] (n=5, MDE 1.6)``; ``–`` without paired seeds."""
    if e["n"] == 0 or pd.isna(e["mean"]):
        return "–"
    if pd.isna(e["ci_low"]):
        return f"{_signed(e['mean'])} (n={e['n']}; {e['reason']})"
    ci = f"[{_signed(e['ci_low'])}, {_signed(e['ci_high'])}]"
    return f"{_signed(e['mean'])} {ci} (n={e['n']}, MDE {e['mde']:.1f})"


def _notes(
    baseline: str, metric: str, select: str, *, confidence: float, alpha: float, power: float
) -> list[str]:
    what = METRIC_TEXT.get(metric, metric)
    notes = [
        f"Each cell: mean difference to the baseline row {baseline} in points of {what}, "
        f"paired by seed; [{confidence * 100:g} % CI of the paired per-seed difference (t)]; "
        f"n: paired seeds; MDE: smallest difference detectable at {power * 100:g} % power "
        f"(two-sided paired t-test, alpha {alpha:g})."
    ]
    if select != "last":
        notes.append(f"Selection: {PROTOCOL_TEXT[select]}.")
    return notes


def _display(frame: pd.DataFrame, esc) -> pd.DataFrame:
    """Rows x columns of cell strings (first column ``Method``)."""
    rows = list(dict.fromkeys(frame["row"]))
    columns = list(dict.fromkeys(frame["column"]))
    cells = {(e["row"], e["column"]): effect_cell(e) for _, e in frame.iterrows()}
    data = {"Method": [esc(r) for r in rows]}
    for c in columns:
        data[esc(c)] = [esc(cells[(r, c)]) for r in rows]
    return pd.DataFrame(data)


def render_effects(
    frame: pd.DataFrame,
    *,
    fmt: str,
    notes: list[str],
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """An :func:`~bench.report.effects.effects_frame` as markdown, LaTeX (booktabs) or CSV."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if fmt == "markdown":
        disp = _display(frame, lambda s: str(s).replace("|", "\\|"))
        body = disp.to_markdown(
            index=False, disable_numparse=True, colalign=["left"] + ["center"] * (disp.shape[1] - 1)
        )
        head = f"**{caption}**\n\n" if caption else ""
        return head + body + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    disp = _display(frame, latex_escape)
    latex = disp.style.hide(axis="index").to_latex(
        column_format="l" + "c" * (disp.shape[1] - 1),
        hrules=True,
        position_float="centering",
        caption=_latex_caption(caption) if caption else None,
        label=_latex_label(label) if label else None,
    )
    lines = latex.splitlines()
    end = lines.index(r"\end{table}")
    lines[end:end] = [r"\par\smallskip", r"{\footnotesize\raggedright"]
    lines[end + 2 : end + 2] = [latex_escape(n) + r"\par" for n in notes] + ["}"]
    return "\n".join(lines) + "\n"


def effects_table(
    suite_dir: Path | str,
    *,
    baseline: str | None = None,
    fmt: str = "markdown",
    out: Path | str | None = None,
    select: str = "last",
    caption: str | None = None,
    label: str | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
) -> str:
    """``bench table --effects``: every row of ``suite_dir`` against the baseline row
    (:func:`resolve_baseline`) per column, in points; also written to ``out``."""
    base = resolve_baseline(suite_dir, baseline)
    df, metric = _frame(suite_dir, select)
    frame = effects_frame(df, base, metric=metric, confidence=confidence, alpha=alpha, power=power)
    notes = _notes(base, metric, select, confidence=confidence, alpha=alpha, power=power)
    text = render_effects(frame, fmt=fmt, notes=notes, caption=caption, label=label)
    if out is not None:
        atomic_write_text(out, text)
    return text


def _num(x, spec: str) -> str:
    return "–" if x is None or pd.isna(x) else format(x, spec)


def power_table(
    suite_dir: Path | str,
    *,
    delta: float,
    baseline: str | None = None,
    select: str = "last",
    alpha: float = 0.05,
    power: float = 0.8,
) -> str:
    """``bench power``: per row and column against the baseline, n, the paired sd, the
    MDE at n and the seeds needed to detect ``delta`` points (a markdown table)."""
    if not (isinstance(delta, int | float) and math.isfinite(delta) and delta > 0):
        raise ValueError(f"--delta must be > 0, got {delta}")
    base = resolve_baseline(suite_dir, baseline)
    df, metric = _frame(suite_dir, select)
    frame = power_frame(df, base, delta=delta, metric=metric, alpha=alpha, power=power)
    need = f"seeds for {delta:g} pts"
    disp = pd.DataFrame(
        {
            "Method": [str(r).replace("|", "\\|") for r in frame["row"]],
            "Column": [str(c).replace("|", "\\|") for c in frame["column"]],
            "n": [str(n) for n in frame["n"]],
            "sd (pts)": [_num(x, ".2f") for x in frame["sd"]],
            "MDE (pts)": [_num(x, ".2f") for x in frame["mde"]],
            need: [_num(x, "d") for x in frame["seeds_needed"]],
        }
    )
    body = disp.to_markdown(index=False, disable_numparse=True)
    what = METRIC_TEXT.get(metric, metric)
    notes = [
        f"Against the baseline row {base}, paired by seed, {what} in points; sd: sample sd "
        f"(ddof=1) of the paired per-seed differences.",
        f"MDE: smallest true difference a two-sided paired t-test (alpha {alpha:g}) detects "
        f"with {power * 100:g} % power at n; {need}: paired seeds for the same power to "
        f"detect a {delta:g}-point difference, assuming that sd.",
    ]
    reasons = sorted({r for r in frame["reason"] if isinstance(r, str)})
    if reasons:
        notes.append("–: " + "; ".join(reasons) + ".")
    if select != "last":
        notes.append(f"Selection: {PROTOCOL_TEXT[select]}.")
    return body + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
