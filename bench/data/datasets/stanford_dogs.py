"""Stanford Dogs as its tarballs unpack: ``Images/<wnid>-<breed>/*.jpg`` (images.tar) and
the split lists ``train_list.mat``, ``test_list.mat`` (``file_list``, 1-based ``labels``)
at the top level beside ``Images/`` (lists.tar), or in ``lists/``."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np

from bench.data.datasets.base import Listing
from bench.data.datasets.common import layout_error, resolve_root
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import FileDataset
from bench.data.datasets.params import FileParams

NAME = "stanford_dogs"
SPLIT_LISTS = ("train_list.mat", "test_list.mat")
EXPECTED = (
    "Images/<wnid>-<breed>/*.jpg with train_list.mat and test_list.mat either at the top "
    "level (as lists.tar unpacks them) or in lists/"
)


class StanfordDogs(FileDataset, name=NAME):
    """Stanford Dogs, 120 breeds, the official split (``train_list.mat``, ``test_list.mat``).

    Classes in label order, named by their folder without the wnid."""

    def list_files(self, root, p: FileParams) -> Listing:
        return list_files(root)

    def check_layout(self, root, p: FileParams) -> None:
        _split_lists(resolve_root(NAME, root, NAME))


def list_files(root) -> Listing:
    """The official split lists of ``root`` read into (file, label) pairs (no decode)."""
    root = resolve_root(NAME, root, NAME)
    lists, where = _split_lists(root)
    folders: dict[int, str] = {}
    pairs = []
    for mat in lists:
        rel, labels = _read_list(mat)
        for r, y in zip(rel, labels):
            folder = Path(r).parent.as_posix()
            if folders.setdefault(y, folder) != folder:
                raise DatasetError(
                    f"{NAME}: {mat}: label {y + 1} covers folders {folders[y]} and {folder}"
                )
        pairs.append([(root / "Images" / r, y) for r, y in zip(rel, labels)])
    if not folders:
        raise DatasetError(f"{NAME}: {lists[0].parent}: the split lists name no images")
    missing = [y + 1 for y in range(max(folders) + 1) if y not in folders]
    if missing:
        raise DatasetError(f"{NAME}: {lists[0].parent}: no image has label {missing[0]}")
    classes = [_breed(folders[y]) for y in range(len(folders))]
    layout = f"Images/<wnid>-<breed>/*.jpg; split lists {where}"
    return Listing(NAME, root, layout, classes, pairs[0], pairs[1])


def _split_lists(root: Path) -> tuple[list[Path], str]:
    """The two split lists of ``root`` and where they are, after checking the layout: at
    the top level or in ``lists/``; both places only when the files are identical."""
    if not root.is_dir() or not (root / "Images").is_dir():
        raise layout_error(NAME, root, "Stanford Dogs", EXPECTED)
    places = {
        "at the top level (as lists.tar unpacks them)": [root / f for f in SPLIT_LISTS],
        "in lists/": [root / "lists" / f for f in SPLIT_LISTS],
    }
    used = {w: ps for w, ps in places.items() if any(p.is_file() for p in ps)}
    if not used:
        raise layout_error(NAME, root, "Stanford Dogs", EXPECTED)
    for paths in used.values():
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{NAME}: {p} is missing: expected {EXPECTED}")
    if len(used) == 2:
        top, sub = used.values()
        for a, b in zip(top, sub):
            if not filecmp.cmp(a, b, shallow=False):
                raise DatasetError(
                    f"{NAME}: {a} and {b} differ: keep one set of split lists "
                    "(the top level, as lists.tar unpacks them, or lists/)"
                )
        return top, "at the top level and, identical, in lists/"
    ((where, paths),) = used.items()
    return paths, where


def _read_list(mat: Path) -> tuple[list[str], list[int]]:
    """``file_list`` (paths under Images/) and 0-based labels from one split list."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        data = loadmat(str(mat))
        files = [_string(x) for x in np.asarray(data["file_list"], dtype=object).ravel()]
        labels = [int(y) - 1 for y in np.asarray(data["labels"]).ravel()]
    except (MatReadError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DatasetError(
            f"{NAME}: {mat} is not a split list with file_list and labels: {exc}"
        ) from exc
    if len(files) != len(labels) or (labels and min(labels) < 0):
        raise DatasetError(f"{NAME}: {mat}: file_list and 1-based labels do not match")
    return files, labels


def _string(x) -> str:
    """A MATLAB cell entry (nested 1-element arrays) to a str."""
    while isinstance(x, np.ndarray):
        x = x.ravel()[0]
    return str(x)


def _breed(folder: str) -> str:
    """``n02085620-Chihuahua`` -> ``Chihuahua``."""
    head, sep, tail = folder.partition("-")
    return tail if sep and head[:1] == "n" and head[1:].isdigit() else folder
