"""Stanford Cars in the layout torchvision's ``StanfordCars`` reads (the devkit ``.mat``
files plus ``cars_train/``, ``cars_test/``); images are decoded by this project."""

from __future__ import annotations

from pathlib import Path

from bench.data.datasets.base import Listing
from bench.data.datasets.common import layout_error, resolve_root
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import FileDataset
from bench.data.datasets.params import FileParams

FOLDER = "stanford_cars"
FILES = (
    "devkit/cars_meta.mat",
    "devkit/cars_train_annos.mat",
    "cars_train/",
    "cars_test_annos_withlabels.mat",
    "cars_test/",
)
EXPECTED = f"{', '.join(FILES)} (in a folder named {FOLDER}, or in <root>/{FOLDER})"


class StanfordCars(FileDataset, name="stanford_cars"):
    """Stanford Cars, 196 models, the official split (torchvision's layout).

    Classes in devkit order (``cars_meta.mat``). ``root`` is the ``stanford_cars`` folder
    or its parent (torchvision's ``root``)."""

    def list_files(self, root, p: FileParams) -> Listing:
        return list_files(root)

    def check_layout(self, root, p: FileParams) -> None:
        _torchvision_root(resolve_root("stanford_cars", root, FOLDER))


def list_files(root) -> Listing:
    """The devkit annotations read (by torchvision) into (file, label) pairs (no decode)."""
    tv_root = _torchvision_root(resolve_root("stanford_cars", root, FOLDER))
    from scipy.io.matlab import MatReadError

    from bench.core.compat import import_torchvision

    reader = import_torchvision().datasets.StanfordCars
    pairs, classes = [], []
    for split in ("train", "test"):
        try:
            ds = reader(str(tv_root), split=split, download=False)
        except (
            MatReadError,
            RuntimeError,
            OSError,
            ValueError,
            KeyError,
            TypeError,
            IndexError,
        ) as exc:
            raise DatasetError(
                f"stanford_cars: {tv_root / FOLDER} could not be read by torchvision "
                f"({type(exc).__name__}: {exc}): expected {', '.join(FILES)}"
            ) from exc
        classes = [str(c) for c in ds.classes]
        split_pairs = [(Path(p), int(y)) for p, y in ds._samples]
        if split_pairs and not all(0 <= y < len(classes) for _, y in split_pairs):
            raise DatasetError(f"stanford_cars: {tv_root / FOLDER}: a class id is out of range")
        pairs.append(split_pairs)
    layout = "devkit/*.mat, cars_train/, cars_test/, cars_test_annos_withlabels.mat"
    return Listing("stanford_cars", tv_root / FOLDER, layout, classes, pairs[0], pairs[1])


def _torchvision_root(root: Path) -> Path:
    """torchvision reads ``<its root>/stanford_cars``: accept that folder or its parent."""
    for base, tv_root in ((root / FOLDER, root), (root, root.parent)):
        if base.name == FOLDER and all((base / f.rstrip("/")).exists() for f in FILES):
            return tv_root
    raise layout_error("stanford_cars", root, "Stanford Cars", EXPECTED)
