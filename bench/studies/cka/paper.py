"""The paper's printed numbers (arXiv 2307.14781: Tables 2 and 5; Tables 3 and 4 are
absent from its text) and the names its datasets go by in a suite, registered with the
report as ``--reference paper`` (:mod:`bench.report.published`)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from bench.report.published import Publication, PublishedTable, register

PAPER = "arXiv 2307.14781"
TABLES = (2, 5)  # Table 2 (by dataset) is the default
# Suite column ids accepted as the paper's dataset names (reference rows).
DATASET_ALIASES = {
    "cub": "cub200",
    "cub200_2011": "cub200",
    "cub_200_2011": "cub200",
    "dogs": "stanford_dogs",
    "cars": "stanford_cars",
    "aircraft": "fgvc_aircraft",
}


def paper_reference(table: int = 2) -> pd.DataFrame:
    """Published numbers of the paper's Table ``table`` (2 or 5), in %.

    Columns: table, method (this project's name), row (display label), dataset, mean,
    std, note. Table 2 datasets: cub200, stanford_dogs, stanford_cars, fgvc_aircraft
    and ``average`` (the printed Average column); Table 5: T1 (Stanford Cars),
    T2 (FGVC-Aircraft), Merge. Tables 3 and 4 are absent from the paper text.
    """
    path = resources.files(__package__).joinpath("reference/paper_tables.csv")
    with path.open("r", encoding="utf-8") as fh:
        ref = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    ref["note"] = ref["note"].fillna("")
    out = ref[ref["table"] == int(table)].reset_index(drop=True)
    if out.empty:
        raise ValueError(
            f"no published numbers for Table {table}: the paper text has Tables 2 and 5 only"
        )
    return out


def published_table(table: int) -> PublishedTable:
    """Table ``table`` as the report lays it beside a suite: Table 2 by dataset column,
    Table 5 by task part (T1 = Stanford Cars, T2 = FGVC-Aircraft, Merge)."""
    by_task = table == 5
    return PublishedTable(
        numbers=paper_reference(table),
        title=f"Table {table} of {PAPER}",
        columns_note=" (T1 = Stanford Cars, T2 = FGVC-Aircraft)" if by_task else "",
        by_task=by_task,
        aliases=DATASET_ALIASES,
    )


register(Publication("paper", TABLES, published_table))
