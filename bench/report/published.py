"""Published numbers a table can show beside a suite's rows (``bench table --reference``).

The report knows no paper: a study registers its paper's printed tables here
(:func:`register`), and a table asks for one by the reference's name, e.g. ``paper:5``
(:func:`resolve_reference`). The report never imports a study."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class PublishedTable:
    """One printed table, laid out for the report."""

    numbers: pd.DataFrame  # columns: table, method, row, dataset, mean, std, note (in %)
    title: str  # how the footnote names it, e.g. "Table 2 of arXiv 2307.14781"
    columns_note: str = ""  # appended to the title in the footnote
    by_task: bool = False  # its columns are task parts (T1..TN, Merge), not datasets
    aliases: Mapping[str, str] = field(default_factory=dict)  # suite column id -> its dataset


@dataclass(frozen=True)
class Publication:
    """The printed tables of one paper, by number."""

    name: str  # what ``--reference`` calls it, e.g. "paper"
    tables: tuple[int, ...]  # the numbers it prints; the first is the default
    table: Callable[[int], PublishedTable]


_PUBLICATIONS: dict[str, Publication] = {}


def register(publication: Publication) -> None:
    _PUBLICATIONS[publication.name] = publication


def resolve_reference(reference: str | None) -> PublishedTable | None:
    """``name`` (its first table) or ``name:N`` as a registered table; None for None."""
    if reference is None:
        return None
    name, sep, number = str(reference).partition(":")
    publication = _PUBLICATIONS.get(name)
    if publication is None or (sep and not number.isdigit()):
        raise ValueError(f"reference must be {_choices()}, not {reference!r}")
    table = int(number) if sep else publication.tables[0]
    if table not in publication.tables:
        raise ValueError(f"reference must be {_choices()}, not {reference!r}")
    return publication.table(table)


def reference_names() -> list[str]:
    """What ``--reference`` accepts: each registered name, and ``name:N`` per table."""
    return [
        w for p in _PUBLICATIONS.values() for w in (p.name, *(f"{p.name}:{n}" for n in p.tables))
    ]


def _choices() -> str:
    words = [f"'{w}'" for w in reference_names()]
    if not words:
        return "the name of a registered publication (none is)"
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
