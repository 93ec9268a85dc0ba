"""From a dataset config to what a run needs: union label layout, train / val / test
splits (labels in union order), per-teacher training sets and the view maker.

methods.md "Setting": the union label space orders classes teacher by teacher; classes in
no task are dropped; the labelled validation split is carved (stratified, seeded) from the
training images and never overlaps the test split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from bench.core.config import DatasetConfig
from bench.data.datasets import DATASETS, LabelledImages, MappedImages, SourceData, TensorImages
from bench.data.splits import Layout, SplitPlan, counted, stratified_carve, task_layout
from bench.data.views import Views


def resolve_tasks(spec: str | list, source: SourceData, groups=None) -> Layout:
    """``halves`` | ``natural`` | explicit class lists (indices or names) -> :class:`Layout`
    (:func:`bench.data.splits.task_layout` over the source's class names)."""
    return task_layout(spec, source.class_names, groups)


@lru_cache(maxsize=8)
def _load_source_cached(name: str, root: str | None, params_json: str) -> SourceData:
    return DATASETS.get(name)(root=root, **json.loads(params_json))


def load_source(cfg: DatasetConfig) -> SourceData:
    """Call the registered loader (memoised per process: a suite reuses it across runs)."""
    return _load_source_cached(cfg.name, cfg.root, json.dumps(cfg.params, sort_keys=True))


def _relabel(images: LabelledImages, table: torch.Tensor) -> LabelledImages:
    """Keep the images whose class is in some task, with labels mapped to union order."""
    mapped = table[images.labels]
    keep = torch.nonzero(mapped >= 0).flatten()
    subset = images.subset(keep)
    subset.labels = mapped[keep]
    return subset


@dataclass
class PreparedData:
    layout: Layout
    train: LabelledImages  # union labels, val removed
    val: LabelledImages | None
    test: LabelledImages | None  # None when prepared with ``with_test=False`` (tuning)
    views: Views
    channels: int
    image_size: int

    def task_train(self, t: int) -> LabelledImages:
        """Training images of task ``t``, labels local to the task (0..k-1)."""
        sl = self.layout.task_slice(t)
        keep = torch.nonzero((self.train.labels >= sl.start) & (self.train.labels < sl.stop))
        subset = self.train.subset(keep.flatten())
        subset.labels = subset.labels - sl.start
        return subset

    def split_plan(self) -> SplitPlan:
        """The layout and each union class's image count per split, as built (what a
        record keeps and what the dry-run computes from labels alone)."""
        return counted(
            self.layout,
            self.train.labels.numpy(),
            None if self.val is None else self.val.labels.numpy(),
            None if self.test is None else self.test.labels.numpy(),
        )

    def task_val(self, t: int) -> LabelledImages | None:
        if self.val is None:
            return None
        sl = self.layout.task_slice(t)
        keep = torch.nonzero((self.val.labels >= sl.start) & (self.val.labels < sl.stop))
        subset = self.val.subset(keep.flatten())
        subset.labels = subset.labels - sl.start
        return subset


def prepare(cfg: DatasetConfig, tasks: Any | None = None, with_test: bool = True) -> PreparedData:
    """Load the dataset named by ``cfg`` and lay it out for amalgamation.

    ``with_test=False`` (hyper-parameter tuning) never touches the loader's test split:
    ``test`` is None and nothing downstream can select on it."""
    source = load_source(cfg)
    layout = resolve_tasks(cfg.tasks if tasks is None else tasks, source, source.groups)
    table = layout.source_to_union(source.num_classes)
    train = _relabel(source.train, table)
    test = _relabel(source.test, table) if with_test else None
    val = None
    if cfg.val_fraction > 0:
        keep, carved = stratified_carve(train.labels, cfg.val_fraction, cfg.split_seed)
        train, val = train.subset(keep), train.subset(carved)
    overrides = {k: v for k, v in cfg.augment.model_dump().items() if v is not None}
    augment = dataclasses.replace(source.augment, **overrides)
    views = Views(augment, source.load_size, source.mean, source.std)
    return PreparedData(layout, train, val, test, views, source.channels, augment.image_size)


def iterate_batches(
    images: LabelledImages,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    with_index: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield ``(uint8 images, labels)`` batches (``with_index``: ``(images, labels,
    indices)``, the indices of the batch's images in ``images``). In-memory and
    memory-mapped images are gathered a batch at a time (no per-item Python overhead);
    files go through a DataLoader with workers. The indices draw nothing from
    ``generator``: the batches are the same with or without them."""
    n = len(images)
    if drop_last and n < batch_size:
        drop_last = False  # tiny splits: still one (smaller) batch per epoch
    if isinstance(images, TensorImages | MappedImages):
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            batch = images.take(idx), images.labels[idx]
            yield (*batch, idx) if with_index else batch
        return
    yield from _file_loader(
        IndexedImages(images) if with_index else images,
        batch_size, shuffle, generator, drop_last, num_workers, pin_memory, False,
    )  # fmt: skip


class IndexedImages(Dataset):
    """``images`` whose items also carry their index: ``ds[i] -> (image, label, i)``. Same
    length, so a DataLoader's sampler draws exactly what it draws for ``images``."""

    def __init__(self, images: LabelledImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return (*self.images[i], i)


def _file_loader(
    images, batch_size, shuffle, generator, drop_last, num_workers, pin_memory, persistent
) -> DataLoader:
    return DataLoader(
        images,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent and num_workers > 0,
    )


@dataclass(eq=False)  # compared and hashed by identity, as any loader
class EpochBatches:
    """The training batches of one run, iterated once per epoch, as ``(images, labels,
    indices)``.

    Same batches, in the same order, as calling :func:`iterate_batches` (``with_index``)
    every epoch with the same generator; but a file dataset's DataLoader is built once, so
    that with ``persistent_workers`` its worker processes live across epochs instead of
    starting again each one. ``pin_memory``: batches in page-locked memory (for a CUDA
    copy)."""

    images: LabelledImages
    batch_size: int
    shuffle: bool
    generator: torch.Generator | None = None
    drop_last: bool = False
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False

    def __post_init__(self) -> None:
        self._loader = None
        if not isinstance(self.images, TensorImages | MappedImages):
            self._loader = _file_loader(
                IndexedImages(self.images),
                self.batch_size,
                self.shuffle,
                self.generator,
                self.drop_last and len(self.images) >= self.batch_size,
                self.num_workers,
                self.pin_memory,
                self.persistent_workers,
            )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self._loader is not None:
            yield from self._loader
            return
        for batch in iterate_batches(
            self.images, self.batch_size, self.shuffle, self.generator, self.drop_last,
            with_index=True,
        ):  # fmt: skip
            yield tuple(t.pin_memory() for t in batch) if self.pin_memory else batch
