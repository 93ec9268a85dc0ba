"""CUB-200-2011 birds, official layout: the index text files plus ``images/``."""

from __future__ import annotations

from pathlib import Path

from bench.data.datasets.base import Listing
from bench.data.datasets.common import layout_error, resolve_root
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import FileDataset
from bench.data.datasets.params import FileParams

REQUIRED = ("images.txt", "image_class_labels.txt", "train_test_split.txt")
EXPECTED = ", ".join(REQUIRED) + ", images/ (classes.txt optional)"


class Cub200(FileDataset, name="cub200"):
    """CUB-200-2011 birds, 200 classes, the official train/test split.

    Classes in class-id order. ``root`` is the ``CUB_200_2011`` folder (or its parent, where
    ``CUB_200_2011.tgz`` was unpacked)."""

    def list_files(self, root, p: FileParams) -> Listing:
        return list_files(root)

    def check_layout(self, root, p: FileParams) -> None:
        _locate(resolve_root("cub200", root, "CUB_200_2011"))


def list_files(root) -> Listing:
    """The official index files read into (file, label) pairs (no decode)."""
    root = _locate(resolve_root("cub200", root, "CUB_200_2011"))
    paths = _table(root / "images.txt")
    labels = {
        i: _int(root / "image_class_labels.txt", i, v)
        for i, v in _table(root / "image_class_labels.txt").items()
    }
    is_train = {
        i: _int(root / "train_test_split.txt", i, v)
        for i, v in _table(root / "train_test_split.txt").items()
    }
    ids = sorted(paths, key=lambda i: int(i) if i.isdigit() else i)
    if not ids:
        raise DatasetError(f"cub200: {root / 'images.txt'} lists no images")
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(f"cub200: {root / name} has no entry for image id {missing[0]}")
    num_classes = max(labels[i] for i in ids)
    if min(labels[i] for i in ids) < 1:
        raise DatasetError(f"cub200: {root / 'image_class_labels.txt'}: class ids start at 1")
    classes = _class_names(root, ids, paths, labels, num_classes)
    train, test = (
        [(root / "images" / paths[i], labels[i] - 1) for i in ids if is_train[i] == flag]
        for flag in (1, 0)
    )
    names = "classes.txt" if (root / "classes.txt").is_file() else "image folders"
    layout = f"images/<class>/*.jpg listed by images.txt; class names from {names}"
    return Listing("cub200", root, layout, classes, train, test)


def _locate(root: Path) -> Path:
    """The ``CUB_200_2011`` folder (``root`` or its child) with the official files."""
    if not (root / REQUIRED[0]).is_file() and (root / "CUB_200_2011" / REQUIRED[0]).is_file():
        root = root / "CUB_200_2011"
    if not all((root / f).is_file() for f in REQUIRED) or not (root / "images").is_dir():
        raise layout_error("cub200", root, "CUB-200-2011", EXPECTED)
    return root


def _table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines (value may hold spaces) to a dict."""
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DatasetError(f"cub200: {path} line {n}: expected '<id> <value>', got {line!r}")
        table[parts[0]] = parts[1]
    return table


def _int(path: Path, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"cub200: {path}: id {key} has a non-integer value {value!r}") from None


def _class_names(root, ids, paths, labels, num_classes) -> list[str]:
    """From classes.txt when present, else from each class's image folder name."""
    if (root / "classes.txt").is_file():
        table = _table(root / "classes.txt")
        names = [table.get(str(c)) for c in range(1, num_classes + 1)]
        if None in names:
            raise DatasetError(
                f"cub200: {root / 'classes.txt'} lacks class id {names.index(None) + 1}"
            )
        return names
    names = [f"class_{c}" for c in range(1, num_classes + 1)]
    for i in ids:
        names[labels[i] - 1] = Path(paths[i]).parent.name or names[labels[i] - 1]
    return names
