"""Stanford Dogs, official layout: ``Images/<wnid>-<breed>/*.jpg`` and the split lists
``lists/train_list.mat``, ``lists/test_list.mat`` (``file_list``, 1-based ``labels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.base import SourceData
from bench.datasets.common import (
    check_sizes,
    layout_error,
    limit_per_class,
    resolve_root,
    source,
)
from bench.datasets.errors import DatasetError
from bench.datasets.memory import file_images
from bench.datasets.params import Channels, PerClass, Size
from bench.datasets.registry import DATASETS

EXPECTED = "Images/<wnid>-<breed>/*.jpg, lists/train_list.mat, lists/test_list.mat"


@DATASETS.register("stanford_dogs")
def stanford_dogs(
    root=None,
    image_size: Size = 224,
    load_size: Size | None = None,
    channels: Channels = 3,
    in_memory: bool | None = None,
    skip_corrupt: bool = False,
    split_seed: int = 0,
    train_per_class: PerClass | None = None,
    test_per_class: PerClass | None = None,
) -> SourceData:
    """Stanford Dogs, 120 breeds, the official split (``lists/*.mat``).

    Classes in label order, named by their folder without the wnid."""
    root = resolve_root("stanford_dogs", root, "stanford_dogs")
    load_size = check_sizes("stanford_dogs", image_size, load_size, channels)
    lists = _check_root(root)

    folders: dict[int, str] = {}
    splits = []
    for split, mat, limit in zip(("train", "test"), lists, (train_per_class, test_per_class)):
        rel, labels = _read_list(mat)
        for r, y in zip(rel, labels):
            folder = Path(r).parent.as_posix()
            if folders.setdefault(y, folder) != folder:
                raise DatasetError(
                    f"stanford_dogs: {mat}: label {y + 1} covers folders {folders[y]} and {folder}"
                )
        keep = limit_per_class(labels, limit, split_seed, "stanford_dogs")
        files = [root / "Images" / rel[k] for k in keep]
        labs = [labels[k] for k in keep]
        splits.append(
            file_images(
                "stanford_dogs", split, files, labs, load_size, channels, skip_corrupt, in_memory
            )
        )
    if not folders:
        raise DatasetError(f"stanford_dogs: {root / 'lists'}: the split lists name no images")
    missing = [y + 1 for y in range(max(folders) + 1) if y not in folders]
    if missing:
        raise DatasetError(f"stanford_dogs: {root / 'lists'}: no image has label {missing[0]}")
    classes = [_breed(folders[y]) for y in range(len(folders))]
    return source(splits[0], splits[1], classes, channels, image_size, load_size)


def _check_root(root: Path) -> list[Path]:
    """The two split lists of ``root``, after checking the official layout is there."""
    lists = [root / "lists" / f"{s}_list.mat" for s in ("train", "test")]
    if not (root / "Images").is_dir() or not all(p.is_file() for p in lists):
        raise layout_error("stanford_dogs", root, "Stanford Dogs", EXPECTED)
    return lists


stanford_dogs.check_layout = lambda root=None, **_: _check_root(
    resolve_root("stanford_dogs", root, "stanford_dogs")
)


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
            f"stanford_dogs: {mat} is not a split list with file_list and labels: {exc}"
        ) from exc
    if len(files) != len(labels) or (labels and min(labels) < 0):
        raise DatasetError(f"stanford_dogs: {mat}: file_list and 1-based labels do not match")
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
