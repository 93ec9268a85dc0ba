"""A :class:`~bench.report.aggregate.Table` as LaTeX (booktabs), GitHub Markdown or CSV."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from bench.report.aggregate import Table

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
    "—": "---",
    "–": "--",
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


FORMATS = {"markdown": ".md", "latex": ".tex", "csv": ".csv"}


def render(table: Table, fmt: str, caption: str | None, label: str | None) -> str:
    if fmt == "latex":
        return to_latex(table, caption=caption, label=label)
    if fmt == "markdown":
        return to_markdown(table, caption=caption)
    if fmt == "csv":
        return to_csv(table)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
