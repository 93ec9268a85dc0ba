"""``python -m bench data check NAME [ROOT]``: what a dataset root holds, beside the
official distribution (:mod:`bench.data.datasets.manifest`), before anything trains.

Reads the split lists the loader reads (its ``list_files``), checks each listed file is on
disk, and with ``decode`` opens every image. Prints the report; a missing root or list
file, a listed file not on disk, or (with ``decode``, unless ``skip_corrupt``) a corrupt
image ends it with one error line naming the file (exit status 2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.data.datasets import DATASETS, DatasetError
from bench.data.datasets.base import Listing
from bench.data.datasets.manifest import official, sentence

SHOWN = 3  # class names shown from each end; files named per problem


def checkable() -> list[str]:
    """The datasets whose loader lists its files without decoding."""
    return [n for n in DATASETS.names() if DATASETS.get(n).lists_files()]


def listing(name: str, root: str | Path | None, params: dict | None = None) -> Listing:
    if name not in checkable():
        raise DatasetError(f"data check: {name!r} cannot be checked (checkable: "
                           f"{', '.join(checkable())})")  # fmt: skip
    loader = DATASETS.get(name)
    return loader.list_files(root, loader.parse(params or {}))


def check_data(
    name: str,
    root: str | Path | None,
    params: dict | None = None,
    decode: bool = False,
    skip_corrupt: bool = False,
    out: Callable[[str], None] = print,
) -> None:
    """Print the report; raise :class:`DatasetError` (one line) when it would not load."""
    found = listing(name, root, params)
    want = official(name, **(params or {}))
    out(f"{name}: {found.root}")
    out(f"layout: {found.layout}")
    out(f"root holds: {_top_entries(found.root)}")
    out(_count_table(found.counts(), want))
    out(f"classes: {_class_sample(found.class_names)}")
    files = [p for p, _ in found.train] + [p for p, _ in found.test]
    missing = [p for p in files if not os.path.isfile(p)]
    out(f"missing: {_problems(missing, len(files), 'listed file(s) not on disk')}")
    corrupt: list[tuple[Path, str]] = []
    if decode:
        corrupt = _corrupt(name, [p for p in files if os.path.isfile(p)])
        named = [f"{p} ({why})" for p, why in corrupt]
        out(f"corrupt: {_problems(named, len(files) - len(missing), 'image(s) do not decode')}")
    else:
        out("corrupt: not checked (--decode opens every image)")
    if want is not None:
        out(sentence(found.counts(), want))
    if missing:
        raise DatasetError(
            f"{name}: {missing[0]} is listed but not on disk ({len(missing)} such file(s))"
        )
    if corrupt and not skip_corrupt:
        raise DatasetError(
            f"{name}: cannot read image {corrupt[0][0]} ({len(corrupt)} corrupt image(s); "
            "skip_corrupt: true skips them)"
        )
    if corrupt:
        out(f"skip_corrupt: the loader would skip {len(corrupt)} corrupt image(s)")


def _top_entries(root: Path, limit: int = 12) -> str:
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    shown = []
    for e in entries[:limit]:
        if e.is_dir():
            n = sum(1 for _ in os.scandir(e.path))
            shown.append(f"{e.name}/ ({n} entr{'y' if n == 1 else 'ies'})")
        else:
            shown.append(e.name)
    more = f", ... ({len(entries) - limit} more)" if len(entries) > limit else ""
    return ", ".join(shown) + more


def _count_table(counts: tuple[int, int, int], want) -> str:
    train = want.train_name if want is not None else "train"
    rows = [f"{'':10}{'classes':>10}{train:>10}{'test':>10}"]
    rows.append(f"{'found':10}" + "".join(f"{c:>10,}" for c in counts))
    if want is not None:
        rows.append(f"{'official':10}" + "".join(f"{c:>10,}" for c in want.counts()))
        rows.append(f"({want.title})")
    return "\n".join(rows)


def _class_sample(names: list[str]) -> str:
    numbered = [f"{i} {n}" for i, n in enumerate(names)]
    if len(numbered) <= 2 * SHOWN:
        return ", ".join(numbered)
    return ", ".join(numbered[:SHOWN]) + ", ..., " + ", ".join(numbered[-SHOWN:])


def _problems(items: list, total: int, what: str) -> str:
    if not items:
        return f"none (of {total:,})"
    head = "; ".join(str(i) for i in items[:SHOWN])
    more = f"; ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return f"{len(items):,} of {total:,} {what}: {head}{more}"


def _corrupt(name: str, files: list[Path]) -> list[tuple[Path, str]]:
    """Every image decoded as the loader decodes it (small, to be quick); the failures."""
    from bench.core.progress import bar
    from bench.data.datasets.decode import decode_image

    bad = []
    for p in bar(files, desc=f"{name}: decode", unit="img"):
        try:
            decode_image(str(p), 8, 3)
        except DatasetError as exc:
            why = str(exc).removeprefix(f"cannot read image {p}: ")
            bad.append((p, " ".join(why.split())))
    return bad
