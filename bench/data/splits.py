"""The class layout and the split arithmetic shared by :mod:`bench.data.prepare` (which trains on
them) and the dry-run (which prints them): teacher tasks -> union label order, the
stratified validation carve, and each task's split sizes. Pure: labels in, labels out, no
image and no torch needed, so that the numbers a dry-run prints are the numbers trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    """Teacher tasks as source class indices, and the union label order they induce."""

    tasks: tuple[tuple[int, ...], ...]
    class_names: tuple[str, ...]  # union order

    @property
    def num_classes(self) -> int:
        return sum(len(t) for t in self.tasks)

    @property
    def sizes(self) -> list[int]:
        return [len(t) for t in self.tasks]

    def task_slice(self, t: int) -> slice:
        start = sum(self.sizes[:t])
        return slice(start, start + self.sizes[t])

    def union_table(self, num_source: int) -> np.ndarray:
        """Lookup table: source class index -> union label (-1 for dropped classes)."""
        table = np.full(num_source, -1, dtype=np.int64)
        order = [c for task in self.tasks for c in task]
        table[order] = np.arange(len(order))
        return table

    def source_to_union(self, num_source: int):
        """:meth:`union_table` as a torch tensor (what ``bench.data.prepare`` indexes with)."""
        import torch  # loaded already wherever data is prepared

        return torch.from_numpy(self.union_table(num_source))


def task_layout(spec: str | list, class_names: Sequence[str], groups=None) -> Layout:
    """``halves`` | ``natural`` | explicit class lists (indices or names) -> :class:`Layout`."""
    names = list(class_names)
    n = len(names)
    if spec == "halves":
        tasks = [list(range(n // 2)), list(range(n // 2, n))]
    elif spec == "natural":
        if not groups:
            raise ConfigError("tasks: 'natural' needs a dataset that defines groups (e.g. merge)")
        tasks = [list(g) for g in groups]
    else:
        tasks = [[_class_index(c, names) for c in task] for task in spec]
    flat = [c for t in tasks for c in t]
    if len(set(flat)) != len(flat):
        raise ConfigError("tasks: a class appears in more than one teacher task")
    if any(len(t) < 2 for t in tasks) or len(tasks) < 1:
        raise ConfigError("tasks: every teacher task needs at least 2 classes")
    return Layout(tuple(tuple(t) for t in tasks), tuple(names[c] for c in flat))


def _class_index(c: int | str, names: list[str]) -> int:
    if isinstance(c, int):
        if not 0 <= c < len(names):
            raise ConfigError(f"tasks: class index {c} is out of range 0..{len(names) - 1}")
        return c
    if c not in names:
        raise ConfigError(f"tasks: unknown class name {c!r}")
    return names.index(c)


def stratified_carve(labels, fraction: float, seed: int) -> tuple[list, list]:
    """Split indices per class: ``round(fraction * n_c)`` to the second part, seeded.
    ``labels``: a torch tensor, a numpy array or a list."""
    rng = np.random.default_rng(seed)
    keep, carved = [], []
    labels_np = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    for c in np.unique(labels_np):
        idx = np.flatnonzero(labels_np == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        carved.extend(idx[:k].tolist())
        keep.extend(idx[k:].tolist())
    return sorted(keep), sorted(carved)


@dataclass(frozen=True)
class SplitPlan:
    """A dataset entry laid out as :func:`bench.data.prepare.prepare` lays it out, from labels
    only: the layout and each union class's image count per split (``val`` None without
    a carve, ``test`` None where the test split is not read)."""

    layout: Layout
    train: np.ndarray  # images per union class, val removed
    val: np.ndarray | None
    test: np.ndarray | None
    carved_from: int  # train images before the carve (union classes only)

    def tasks(self) -> list[dict[str, Any]]:
        """Per teacher task: class ids (source indices), names and split sizes -- what a
        run's record keeps as ``tasks_resolved``."""
        return [
            {
                "task": t,
                "classes": list(ids),
                "names": list(self.layout.class_names[self.layout.task_slice(t)]),
                **_sizes(self, self.layout.task_slice(t)),
            }
            for t, ids in enumerate(self.layout.tasks)
        ]

    def sizes(self) -> dict[str, int | None]:
        """Images per split over the union (``val``/``test`` None where absent)."""
        return _sizes(self, slice(None))


def _sizes(plan: SplitPlan, sl: slice) -> dict[str, int | None]:
    return {
        split: None if counts is None else int(counts[sl].sum())
        for split, counts in (("train", plan.train), ("val", plan.val), ("test", plan.test))
    }


def relabel(labels, table: np.ndarray) -> np.ndarray:
    """Source labels -> union labels, images of dropped classes removed (order kept)."""
    mapped = table[np.asarray(labels, dtype=np.int64)]
    return mapped[mapped >= 0]


def plan_splits(
    tasks: str | list,
    class_names: Sequence[str],
    train_labels,
    test_labels,
    val_fraction: float,
    split_seed: int,
    groups=None,
) -> SplitPlan:
    """The layout and split sizes that ``prepare`` builds from a loader's source labels
    (``test_labels`` None: no test split), carving val with :func:`stratified_carve`."""
    layout = task_layout(tasks, class_names, groups)
    table = layout.union_table(len(class_names))
    train = relabel(train_labels, table)
    val = None
    carved_from = len(train)
    if val_fraction > 0:
        keep, carved = stratified_carve(train, val_fraction, split_seed)
        train, val = train[keep], train[carved]
    test = None if test_labels is None else relabel(test_labels, table)
    return counted(layout, train, val, test, carved_from)


def counted(layout: Layout, train, val, test, carved_from: int | None = None) -> SplitPlan:
    """A :class:`SplitPlan` from union labels per split (None: no such split)."""
    n = layout.num_classes

    def count(labels):
        if labels is None:
            return None
        return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n)[:n]

    train_n = count(train)
    val_n = count(val)
    if carved_from is None:
        carved_from = int(train_n.sum() + (0 if val_n is None else val_n.sum()))
    return SplitPlan(layout, train_n, val_n, count(test), carved_from)
