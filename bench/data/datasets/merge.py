"""Cross-dataset merge (Table 5): several datasets side by side, label spaces concatenated
in part order, one natural teacher task per part (``tasks: natural``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.data.datasets.base import LabelListing, SourceData
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import Dataset
from bench.data.datasets.mapped import concat_images
from bench.data.datasets.params import Params
from bench.data.datasets.registry import DATASETS


class Merge(Dataset, name="merge"):
    """``parts: [{name: stanford_cars, root: ..., params: {...}}, {name: fgvc_aircraft}]``.
    Every part must give images of the same channels and load size; the first part's view
    recipe is used. Class names are prefixed by the part's name."""

    class Params(Params):
        parts: list[dict[str, Any]] | None = None

    def load(self, root, p: Params) -> SourceData:
        if root is not None:
            raise DatasetError(
                "merge: set `root:` inside each entry of `params.parts`, not on merge"
            )
        if not p.parts or len(p.parts) < 2:
            raise DatasetError("merge: params.parts needs at least two datasets")
        sources = [_load_part(i, part) for i, part in enumerate(p.parts)]
        first = sources[0]
        for i, src in enumerate(sources[1:], start=1):
            if (src.channels, src.load_size) != (first.channels, first.load_size):
                raise DatasetError(
                    f"merge: params.parts.{i} gives {src.channels}x{src.load_size}px images, "
                    f"part 0 gives {first.channels}x{first.load_size}px; set image_size alike"
                )
        offsets, groups, names, start = [], [], [], 0
        for part, src in zip(p.parts, sources):
            offsets.append(start)
            groups.append(list(range(start, start + src.num_classes)))
            names += [f"{part['name']}/{c}" for c in src.class_names]
            start += src.num_classes
        return dataclasses.replace(  # the first part's channels, size, views, mean, std
            first,
            train=concat_images([s.train for s in sources], offsets),
            test=concat_images([s.test for s in sources], offsets),
            class_names=names,
            groups=groups,
        )

    def natural_tasks(self, p: Params) -> int:
        return len(p.parts or [])  # lets a dry-run count teachers without loading data

    def parts(self, p: Params) -> list[dict[str, Any]]:
        return list(p.parts or [])

    def list_labels(self, root, p: Params) -> LabelListing:
        """The parts' listings side by side, as :meth:`load` joins them (one group each)."""
        names: list[str] = []
        train: list[int] = []
        test: list[int] = []
        groups: list[list[int]] = []
        notes: list[str] = []
        for part in p.parts or []:
            loader = DATASETS.get(part["name"])
            listing = loader.list_labels(part.get("root"), loader.parse(part.get("params", {})))
            start = len(names)
            train += [y + start for y in listing.train]
            test += [y + start for y in listing.test]
            groups.append(list(range(start, start + len(listing.class_names))))
            names += [f"{part['name']}/{c}" for c in listing.class_names]
            notes += [listing.note] if listing.note and listing.note not in notes else []
        return LabelListing(names, train, test, groups, "; ".join(notes) or None)


def _load_part(i: int, part: dict[str, Any]) -> SourceData:
    """Part ``i`` of a merge, loaded (its keys checked, a merge refused)."""
    unknown = set(part) - {"name", "root", "params"}
    if "name" not in part or unknown:
        raise DatasetError(
            f"merge: params.parts.{i}: expected keys name, root, params (got {sorted(part)})"
        )
    if part["name"] == "merge":
        raise DatasetError(f"merge: params.parts.{i}: a merge cannot contain a merge")
    return DATASETS.get(part["name"])(root=part.get("root"), **part.get("params", {}))
