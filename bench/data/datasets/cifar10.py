"""CIFAR-10 from an image-folder copy (``train/<class>/``, ``test/<class>/``) or from
the python format (``cifar-10-batches-py/``), read with a restricted unpickler that admits
only the dicts, lists and numpy arrays of the batches (never arbitrary pickled objects)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from bench.data.datasets.base import LabelListing, NotListed, SourceData
from bench.data.datasets.common import (
    SPLIT_FOLDERS_RE,
    check_sizes,
    check_source,
    resolve_root,
    resolve_source,
    source,
    tensor_split,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.image_folder import SPLIT_LAYOUT, folder_labels, folder_layout, load_folder
from bench.data.datasets.params import Channels, PerClass, Size
from bench.data.datasets.registry import DATASETS

BATCHES = "cifar-10-batches-py"
BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
EXPECTED = f"{SPLIT_LAYOUT} (image folders), or {BATCHES}/ (the python-format batches)"


@DATASETS.register("cifar10")
def cifar10(
    root=None,
    image_size: Size = 32,
    load_size: Size | None = None,
    channels: Channels = 3,
    in_memory: bool | None = None,
    skip_corrupt: bool = False,
    split_seed: int = 0,
    train_per_class: PerClass | None = None,
    test_per_class: PerClass | None = None,
    archive: str | None = None,
) -> SourceData:
    """CIFAR-10 at 32 px: image folders or the python batches.

    Classes in the official (alphabetical) order; ``*_per_class`` keep the first N of
    each class after a shuffle seeded by ``split_seed``. ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""
    root = resolve_source("cifar10", root, archive, "cifar10")
    if root.name == BATCHES:
        root = root.parent
    if not (root / BATCHES).is_dir():
        return load_folder(
            "cifar10",
            root,
            EXPECTED,
            image_size=image_size,
            load_size=load_size,
            channels=channels,
            in_memory=in_memory,
            skip_corrupt=skip_corrupt,
            split_seed=split_seed,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            what="CIFAR-10",
        )
    load_size = check_sizes("cifar10", image_size, load_size, channels)
    classes = [_text(c) for c in _field(read_batch(root / BATCHES / "batches.meta"), "label_names")]
    splits = []
    for files, limit in ((BATCH_FILES[:5], train_per_class), (BATCH_FILES[5:6], test_per_class)):
        data, targets = [], []
        for name in files:
            batch = read_batch(root / BATCHES / name)
            images = np.asarray(_field(batch, "data"))
            labels = list(_field(batch, "labels"))
            if images.dtype != np.uint8 or images.shape != (len(labels), 3072):
                raise DatasetError(
                    f"cifar10: {root / BATCHES / name}: expected uint8 data N x 3072 and N "
                    f"labels, got {images.dtype} {images.shape} and {len(labels)} labels"
                )
            data.append(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            targets += [int(y) for y in labels]
        if targets and not 0 <= min(targets) <= max(targets) < len(classes):
            raise DatasetError(f"cifar10: {root / BATCHES}: a label is out of range")
        splits.append(
            tensor_split(
                np.concatenate(data), targets, limit, split_seed, load_size, channels, "cifar10"
            )
        )
    return source(splits[0], splits[1], classes, channels, image_size, load_size)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches (dicts of lists, bytes and numpy arrays) and
    nothing else: any other global in the stream (a function call, a class) is refused."""

    ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        module = (
            "numpy._core" + module[len("numpy.core") :]
            if module.startswith("numpy.core")
            else module
        )
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """One python-format batch file, read with :class:`BatchUnpickler`."""
    try:
        with open(path, "rb") as fh:
            batch = BatchUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError:
        raise DatasetError(
            f"cifar10: {path} is missing: expected {', '.join(BATCH_FILES)} in {path.parent}"
        ) from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"cifar10: {path} is not a CIFAR-10 python batch: {exc}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"cifar10: {path} is not a CIFAR-10 python batch (not a dict)")
    return batch


def _field(batch: dict, key: str):
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise DatasetError(f"cifar10: a python batch has no {key!r} entry")


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _check_layout(root=None, archive: str | None = None, **_) -> None:
    """Pre-run check: folders listed, batch files present; nothing read or unpacked."""

    def check_root(root):
        if root.name == BATCHES:
            root = root.parent
        if (root / BATCHES).is_dir():
            missing = [f for f in BATCH_FILES if not (root / BATCHES / f).is_file()]
            if missing:
                raise DatasetError(
                    f"cifar10: {root / BATCHES} lacks {', '.join(missing)}: expected "
                    + ", ".join(BATCH_FILES)
                )
            return
        folder_layout("cifar10", root, EXPECTED, "CIFAR-10", None)

    batches = tuple(f"{BATCHES}/{f}" for f in BATCH_FILES)
    check_source(
        "cifar10", root, archive, "cifar10", [SPLIT_FOLDERS_RE, batches], EXPECTED, check_root
    )


cifar10.check_layout = _check_layout


def _list_labels(
    root=None,
    archive: str | None = None,
    split_seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    skip_corrupt: bool = False,
    **_,
) -> LabelListing:
    """Image folders: listed (no decode). The python batches hold labels and images in
    one pickle each, so they are not read for a listing (:class:`NotListed`)."""
    if archive is None or str(archive) == "":
        found = resolve_root("cifar10", root, "cifar10")
        if found.name == BATCHES or (found / BATCHES).is_dir():
            raise NotListed(f"{BATCHES}/ holds labels and images in one pickle per batch")
    return folder_labels(
        "cifar10", root, archive, "cifar10", EXPECTED, "CIFAR-10",
        split_seed=split_seed, train_per_class=train_per_class,
        test_per_class=test_per_class, skip_corrupt=skip_corrupt,
    )  # fmt: skip


cifar10.list_labels = _list_labels
