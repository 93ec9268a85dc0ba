"""FGVC-Aircraft 2013b in its release layout (``data/images/``, ``data/variants.txt``,
``data/images_variant_*.txt``), listed by torchvision's ``FGVCAircraft``; images are
decoded by this project."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from bench.data.datasets.base import Listing
from bench.data.datasets.common import layout_error, resolve_root
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import FileDataset
from bench.data.datasets.params import FileParams

FOLDER = "fgvc-aircraft-2013b"
LEVELS = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}


def _expected(level: str, train_split: str) -> str:
    return (
        f"data/images/, data/{LEVELS[level]}, data/images_{level}_{train_split}.txt, "
        f"data/images_{level}_test.txt (in a folder named {FOLDER}, or in <root>/{FOLDER}; "
        f"or the root is {FOLDER}/data)"
    )


class FgvcAircraft(FileDataset, name="fgvc_aircraft"):
    """FGVC-Aircraft 2013b, 100 variants, trains on trainval and tests on test.

    ``annotation_level`` family (70) or manufacturer (30) instead; classes in the order of
    the release's list; ``train_split: train`` leaves val out. Images keep their copyright
    banner (as torchvision serves them)."""

    class Params(FileParams):
        annotation_level: Literal["variant", "family", "manufacturer"] = "variant"
        train_split: Literal["trainval", "train"] = "trainval"

    def list_files(self, root, p: Params) -> Listing:
        return list_files(root, p.annotation_level, p.train_split)

    def check_layout(self, root, p: Params) -> None:
        """Pre-run check: the release's folders and list files exist (nothing is read)."""
        if p.annotation_level not in LEVELS or p.train_split not in ("trainval", "train"):
            return  # the loader names these errors
        expected = _expected(p.annotation_level, p.train_split)
        _torchvision_root(
            resolve_root("fgvc_aircraft", root, FOLDER), p.annotation_level, p.train_split, expected
        )


def list_files(root, annotation_level: str = "variant", train_split: str = "trainval") -> Listing:
    """The release's list files read (by torchvision) into (file, label) pairs (no decode)."""
    name = "fgvc_aircraft"
    if annotation_level not in LEVELS:
        raise DatasetError(f"{name}: annotation_level must be one of {sorted(LEVELS)}")
    if train_split not in ("trainval", "train"):
        raise DatasetError(f"{name}: train_split must be 'trainval' or 'train'")
    root = resolve_root(name, root, FOLDER)
    expected = _expected(annotation_level, train_split)
    tv_root = _torchvision_root(root, annotation_level, train_split, expected)
    from bench.core.compat import import_torchvision

    reader = import_torchvision().datasets.FGVCAircraft
    pairs, classes = [], []
    for tv_split in (train_split, "test"):
        try:
            ds = reader(
                str(tv_root), split=tv_split, annotation_level=annotation_level, download=False
            )
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise DatasetError(
                f"{name}: {tv_root / FOLDER} could not be read by torchvision "
                f"({type(exc).__name__}: {exc}): expected {expected}"
            ) from exc
        classes = list(ds.classes)
        pairs.append([(Path(p), int(y)) for p, y in zip(ds._image_files, ds._labels)])
    layout = (
        f"data/images/*.jpg listed by data/images_{annotation_level}_{train_split}.txt and "
        f"data/images_{annotation_level}_test.txt; classes from data/{LEVELS[annotation_level]}"
    )
    return Listing(name, tv_root / FOLDER, layout, classes, pairs[0], pairs[1])


def _torchvision_root(root: Path, level: str, train_split: str, expected: str) -> Path:
    """torchvision reads ``<its root>/fgvc-aircraft-2013b``: accept that folder, its parent
    or its ``data/`` folder."""
    need = (
        "images",
        LEVELS[level],
        f"images_{level}_{train_split}.txt",
        f"images_{level}_test.txt",
    )
    candidates = [(root / FOLDER, root), (root, root.parent)]
    if root.name == "data":
        candidates.append((root.parent, root.parent.parent))
    for base, tv_root in candidates:
        if base.name == FOLDER and all((base / "data" / f).exists() for f in need):
            return tv_root
    raise layout_error("fgvc_aircraft", root, "FGVC-Aircraft", expected)
