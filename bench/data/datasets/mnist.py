"""MNIST from an image-folder copy (``train/<digit>/``, ``test/<digit>/``) or from
torchvision's raw IDX format (``MNIST/raw/``, read by torchvision)."""

from __future__ import annotations

from pathlib import Path

from bench.data.datasets.base import LabelListing, SourceData
from bench.data.datasets.common import SPLIT_FOLDERS_RE, TensorSplit, limited_labels, source
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.image_folder import SPLIT_LAYOUT, FolderDataset, FolderParams
from bench.data.datasets.params import Channels, Size

RAW = "MNIST/raw"
IDX_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
EXPECTED = f"{SPLIT_LAYOUT} (image folders), or {RAW}/ with {IDX_FILES} (torchvision's format)"
FILES = [f.strip() for f in IDX_FILES.split(",")]
CLASSES = [str(d) for d in range(10)]


class Mnist(FolderDataset, name="mnist"):
    """MNIST, grey 28 px: image folders or torchvision's raw IDX files.

    No flips by default (a flipped digit is another symbol). ``*_per_class`` keep the
    first N of each class after a shuffle seeded by ``split_seed``. ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""

    class Params(FolderParams):
        image_size: Size = 28
        channels: Channels = 1

    expected = EXPECTED
    what = "MNIST"
    default_folder = "mnist"
    flip = 0.0
    archive_layouts = (SPLIT_FOLDERS_RE, tuple(f"{RAW}/{f}" for f in FILES))

    def locate(self, root: Path) -> tuple[Path, bool]:
        if root.name == "MNIST" and (root / "raw").is_dir():
            root = root.parent
        return root, (root / RAW).is_dir()

    def load_native(self, root: Path, p: Params, load_size: int) -> SourceData:
        """The raw IDX files, read by torchvision."""
        from bench.core.compat import import_torchvision

        reader = import_torchvision().datasets.MNIST
        splits = []
        for train, limit in ((True, p.train_per_class), (False, p.test_per_class)):
            try:
                ds = reader(str(root), train=train, download=False)
            except (RuntimeError, OSError, ValueError, AssertionError) as exc:
                raise DatasetError(
                    f"mnist: {root / RAW} is not a complete MNIST raw folder "
                    f"(torchvision: {exc or type(exc).__name__}): expected {IDX_FILES}"
                ) from exc
            splits.append(TensorSplit("mnist", ds.data, ds.targets).limited(limit, p, load_size))
        return source(*splits, CLASSES, p.channels, p.image_size, load_size, flip=self.flip)

    def check_native(self, root: Path) -> None:
        """The IDX files present (none is read)."""
        missing = [f for f in FILES if not (root / RAW / f).is_file()]
        if missing:
            raise DatasetError(f"mnist: {root / RAW} lacks {', '.join(missing)}")

    def native_labels(self, root: Path, p: Params) -> LabelListing:
        """The two label files read (the image files are not opened)."""
        train, test = (
            limited_labels(_idx_labels(root / RAW / f), limit, p.split_seed, "mnist")
            for f, limit in (
                ("train-labels-idx1-ubyte", p.train_per_class),
                ("t10k-labels-idx1-ubyte", p.test_per_class),
            )
        )
        return LabelListing(CLASSES, train, test)


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
