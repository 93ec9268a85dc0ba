"""MNIST from an image-folder copy (``train/<digit>/``, ``test/<digit>/``) or from
torchvision's raw IDX format (``MNIST/raw/``, read by torchvision)."""

from __future__ import annotations

from bench.data.datasets.base import LabelListing, SourceData
from bench.data.datasets.common import (
    SPLIT_FOLDERS_RE,
    check_sizes,
    check_source,
    limited_labels,
    resolve_root,
    resolve_source,
    source,
    tensor_split,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.image_folder import SPLIT_LAYOUT, folder_labels, folder_layout, load_folder
from bench.data.datasets.params import Channels, PerClass, Size
from bench.data.datasets.registry import DATASETS

RAW = "MNIST/raw"
IDX_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
EXPECTED = f"{SPLIT_LAYOUT} (image folders), or {RAW}/ with {IDX_FILES} (torchvision's format)"


@DATASETS.register("mnist")
def mnist(
    root=None,
    image_size: Size = 28,
    load_size: Size | None = None,
    channels: Channels = 1,
    in_memory: bool | None = None,
    skip_corrupt: bool = False,
    split_seed: int = 0,
    train_per_class: PerClass | None = None,
    test_per_class: PerClass | None = None,
    archive: str | None = None,
) -> SourceData:
    """MNIST, grey 28 px: image folders or torchvision's raw IDX files.

    No flips by default (a flipped digit is another symbol). ``*_per_class`` keep the
    first N of each class after a shuffle seeded by ``split_seed``. ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""
    root = resolve_source("mnist", root, archive, "mnist")
    if root.name == "MNIST" and (root / "raw").is_dir():
        root = root.parent
    if not (root / RAW).is_dir():
        return load_folder(
            "mnist",
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
            what="MNIST",
            flip=0.0,
        )
    load_size = check_sizes("mnist", image_size, load_size, channels)
    from bench.core.compat import import_torchvision

    reader = import_torchvision().datasets.MNIST
    splits = []
    for train, limit in ((True, train_per_class), (False, test_per_class)):
        try:
            ds = reader(str(root), train=train, download=False)
        except (RuntimeError, OSError, ValueError, AssertionError) as exc:
            raise DatasetError(
                f"mnist: {root / RAW} is not a complete MNIST raw folder "
                f"(torchvision: {exc or type(exc).__name__}): expected {IDX_FILES}"
            ) from exc
        splits.append(
            tensor_split(ds.data, ds.targets, limit, split_seed, load_size, channels, "mnist")
        )
    classes = [str(d) for d in range(10)]
    return source(splits[0], splits[1], classes, channels, image_size, load_size, flip=0.0)


def _check_layout(root=None, archive: str | None = None, **_) -> None:
    """Pre-run check: folders listed, IDX files present; nothing read or unpacked."""
    files = [f.strip() for f in IDX_FILES.split(",")]

    def check_root(root):
        if root.name == "MNIST" and (root / "raw").is_dir():
            root = root.parent
        if (root / RAW).is_dir():
            missing = [f for f in files if not (root / RAW / f).is_file()]
            if missing:
                raise DatasetError(f"mnist: {root / RAW} lacks {', '.join(missing)}")
            return
        folder_layout("mnist", root, EXPECTED, "MNIST", None)

    raw = tuple(f"{RAW}/{f}" for f in files)
    check_source("mnist", root, archive, "mnist", [SPLIT_FOLDERS_RE, raw], EXPECTED, check_root)


mnist.check_layout = _check_layout


def _list_labels(
    root=None,
    archive: str | None = None,
    split_seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    skip_corrupt: bool = False,
    **_,
) -> LabelListing:
    """Image folders: listed (no decode); raw IDX: the two label files read (the image
    files are not opened)."""
    if archive is None or str(archive) == "":
        found = resolve_root("mnist", root, "mnist")
        if found.name == "MNIST" and (found / "raw").is_dir():
            found = found.parent
        if (found / RAW).is_dir():
            train, test = (
                limited_labels(_idx_labels(found / RAW / f), limit, split_seed, "mnist")
                for f, limit in (
                    ("train-labels-idx1-ubyte", train_per_class),
                    ("t10k-labels-idx1-ubyte", test_per_class),
                )
            )
            return LabelListing([str(d) for d in range(10)], train, test)
    return folder_labels(
        "mnist", root, archive, "mnist", EXPECTED, "MNIST",
        split_seed=split_seed, train_per_class=train_per_class,
        test_per_class=test_per_class, skip_corrupt=skip_corrupt,
    )  # fmt: skip


def _idx_labels(path) -> list[int]:
    """An IDX1 label file (magic 2049, count, one byte per label)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"mnist: {path}: {exc}") from None
    count = int.from_bytes(data[4:8], "big")
    if int.from_bytes(data[:4], "big") != 2049 or len(data) != 8 + count:
        raise DatasetError(f"mnist: {path} is not an IDX label file")
    return list(data[8:])


mnist.list_labels = _list_labels
