"""CIFAR-10 from an image-folder copy (``train/<class>/``, ``test/<class>/``) or from
the python format (``cifar-10-batches-py/``), read with a restricted unpickler that admits
only the dicts, lists and numpy arrays of the batches (never arbitrary pickled objects)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from bench.data.datasets.base import LabelListing, NotListed, SourceData
from bench.data.datasets.common import SPLIT_FOLDERS_RE, TensorSplit, resolve_root, source
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.image_folder import SPLIT_LAYOUT, FolderDataset, FolderParams
from bench.data.datasets.params import Size

BATCHES = "cifar-10-batches-py"
BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
EXPECTED = f"{SPLIT_LAYOUT} (image folders), or {BATCHES}/ (the python-format batches)"


class Cifar10(FolderDataset, name="cifar10"):
    """CIFAR-10 at 32 px: image folders or the python batches.

    Classes in the official (alphabetical) order; ``*_per_class`` keep the first N of
    each class after a shuffle seeded by ``split_seed``. ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""

    class Params(FolderParams):
        image_size: Size = 32

    expected = EXPECTED
    what = "CIFAR-10"
    default_folder = "cifar10"
    archive_layouts = (SPLIT_FOLDERS_RE, tuple(f"{BATCHES}/{f}" for f in BATCH_FILES))

    def locate(self, root: Path) -> tuple[Path, bool]:
        root = root.parent if root.name == BATCHES else root
        return root, (root / BATCHES).is_dir()

    def load_native(self, root: Path, p: Params, load_size: int) -> SourceData:
        meta = read_batch(root / BATCHES / "batches.meta")
        classes = [_text(c) for c in _field(meta, "label_names")]
        train, test = (
            _read_split(root / BATCHES, files, len(classes)).limited(limit, p, load_size)
            for files, limit in (
                (BATCH_FILES[:5], p.train_per_class),
                (BATCH_FILES[5:6], p.test_per_class),
            )
        )
        return source(train, test, classes, p.channels, p.image_size, load_size)

    def check_native(self, root: Path) -> None:
        """The batch files present (none is read)."""
        missing = [f for f in BATCH_FILES if not (root / BATCHES / f).is_file()]
        if missing:
            raise DatasetError(
                f"cifar10: {root / BATCHES} lacks {', '.join(missing)}: expected "
                + ", ".join(BATCH_FILES)
            )

    def list_labels(self, root, p: Params) -> LabelListing:
        """Image folders: listed (no decode). The python batches hold labels and images in
        one pickle each, so they are not read for a listing (:class:`NotListed`)."""
        if p.archive is None or str(p.archive) == "":
            found = resolve_root("cifar10", root, "cifar10")
            if found.name == BATCHES or (found / BATCHES).is_dir():
                raise NotListed(f"{BATCHES}/ holds labels and images in one pickle per batch")
        return super().list_labels(root, p)


def _read_split(folder: Path, files: tuple[str, ...], num_classes: int) -> TensorSplit:
    """The images (N x 32 x 32 x 3) and labels of ``files`` (python batches in ``folder``)."""
    data, targets = [], []
    for name in files:
        batch = read_batch(folder / name)
        images = np.asarray(_field(batch, "data"))
        labels = list(_field(batch, "labels"))
        if images.dtype != np.uint8 or images.shape != (len(labels), 3072):
            raise DatasetError(
                f"cifar10: {folder / name}: expected uint8 data N x 3072 and N "
                f"labels, got {images.dtype} {images.shape} and {len(labels)} labels"
            )
        data.append(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        targets += [int(y) for y in labels]
    if targets and not 0 <= min(targets) <= max(targets) < num_classes:
        raise DatasetError(f"cifar10: {folder}: a label is out of range")
    return TensorSplit("cifar10", np.concatenate(data), targets)


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
