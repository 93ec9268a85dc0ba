"""Cross-dataset merge (Table 5): several datasets side by side, label spaces concatenated
in part order, one natural teacher task per part (``tasks: natural``)."""

from __future__ import annotations

from typing import Any

import torch

from bench.data.datasets.base import (
    FileImages,
    LabelledImages,
    LabelListing,
    NotListed,
    SourceData,
    TensorImages,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.mapped import MappedImages
from bench.data.datasets.registry import DATASETS


def concat_images(splits: list[LabelledImages], offsets: list[int]) -> LabelledImages:
    """One split from several, labels shifted by each part's class offset."""
    labels = torch.cat([s.labels + off for s, off in zip(splits, offsets)])
    if all(isinstance(s, TensorImages) for s in splits):
        return TensorImages(torch.cat([s.images for s in splits]), labels)
    if all(isinstance(s, MappedImages) for s in splits):
        return MappedImages.concat(splits, labels)
    if all(isinstance(s, FileImages) for s in splits):
        first = splits[0]
        paths = [p for s in splits for p in s.paths]
        return FileImages(paths, labels, first.load_size, first.channels, first.skip_corrupt)
    raise DatasetError(
        "merge: parts mix in-memory, memory-mapped and file-backed images; set in_memory alike"
    )


@DATASETS.register("merge")
def merge(root=None, parts: list[dict[str, Any]] | None = None) -> SourceData:
    """``parts: [{name: stanford_cars, root: ..., params: {...}}, {name: fgvc_aircraft}]``.
    Every part must give images of the same channels and load size; the first part's view
    recipe is used. Class names are prefixed by the part's name."""
    if root is not None:
        raise DatasetError("merge: set `root:` inside each entry of `params.parts`, not on merge")
    if not parts or len(parts) < 2:
        raise DatasetError("merge: params.parts needs at least two datasets")
    sources = []
    for i, part in enumerate(parts):
        unknown = set(part) - {"name", "root", "params"}
        if "name" not in part or unknown:
            raise DatasetError(
                f"merge: params.parts.{i}: expected keys name, root, params (got {sorted(part)})"
            )
        if part["name"] == "merge":
            raise DatasetError(f"merge: params.parts.{i}: a merge cannot contain a merge")
        sources.append(DATASETS.get(part["name"])(root=part.get("root"), **part.get("params", {})))
    first = sources[0]
    for i, src in enumerate(sources[1:], start=1):
        if (src.channels, src.load_size) != (first.channels, first.load_size):
            raise DatasetError(
                f"merge: params.parts.{i} gives {src.channels}x{src.load_size}px images, "
                f"part 0 gives {first.channels}x{first.load_size}px; set image_size alike"
            )
    offsets, groups, names, start = [], [], [], 0
    for part, src in zip(parts, sources):
        offsets.append(start)
        groups.append(list(range(start, start + src.num_classes)))
        names += [f"{part['name']}/{c}" for c in src.class_names]
        start += src.num_classes
    return SourceData(
        train=concat_images([s.train for s in sources], offsets),
        test=concat_images([s.test for s in sources], offsets),
        class_names=names,
        channels=first.channels,
        load_size=first.load_size,
        augment=first.augment,
        mean=first.mean,
        std=first.std,
        groups=groups,
    )


def _natural_tasks(parts: list[dict[str, Any]] | None = None, **_: Any) -> int:
    return len(parts or [])


merge.natural_tasks = _natural_tasks  # lets a dry-run count teachers without loading data


def _list_labels(root=None, parts: list[dict[str, Any]] | None = None) -> LabelListing:
    """The parts' listings side by side, as :func:`merge` joins them (one group each)."""
    names: list[str] = []
    train: list[int] = []
    test: list[int] = []
    groups: list[list[int]] = []
    notes: list[str] = []
    for part in parts or []:
        hook = getattr(DATASETS.get(part["name"]), "list_labels", None)
        if hook is None:
            raise NotListed(f"part {part['name']!r} has no listing")
        listing = hook(root=part.get("root"), **part.get("params", {}))
        start = len(names)
        train += [y + start for y in listing.train]
        test += [y + start for y in listing.test]
        groups.append(list(range(start, start + len(listing.class_names))))
        names += [f"{part['name']}/{c}" for c in listing.class_names]
        notes += [listing.note] if listing.note and listing.note not in notes else []
    return LabelListing(names, train, test, groups, "; ".join(notes) or None)


merge.list_labels = _list_labels
