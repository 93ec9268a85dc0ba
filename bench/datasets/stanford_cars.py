"""Stanford Cars in the layout torchvision's ``StanfordCars`` reads (the devkit ``.mat``
files plus ``cars_train/``, ``cars_test/``); images are decoded by this project."""

from __future__ import annotations

from pathlib import Path

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

FOLDER = "stanford_cars"
FILES = (
    "devkit/cars_meta.mat",
    "devkit/cars_train_annos.mat",
    "cars_train/",
    "cars_test_annos_withlabels.mat",
    "cars_test/",
)
EXPECTED = f"{', '.join(FILES)} (in a folder named {FOLDER}, or in <root>/{FOLDER})"


@DATASETS.register("stanford_cars")
def stanford_cars(
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
    """Stanford Cars, 196 models, the official split (torchvision's layout).

    Classes in devkit order (``cars_meta.mat``). ``root`` is the ``stanford_cars`` folder
    or its parent (torchvision's ``root``)."""
    root = resolve_root("stanford_cars", root, FOLDER)
    load_size = check_sizes("stanford_cars", image_size, load_size, channels)
    tv_root = _torchvision_root(root)
    from scipy.io.matlab import MatReadError

    from bench.compat import import_torchvision

    reader = import_torchvision().datasets.StanfordCars
    splits, classes = [], []
    for split, limit in (("train", train_per_class), ("test", test_per_class)):
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
        files = [Path(p) for p, _ in ds._samples]
        labels = [int(y) for _, y in ds._samples]
        if labels and not 0 <= min(labels) <= max(labels) < len(classes):
            raise DatasetError(f"stanford_cars: {tv_root / FOLDER}: a class id is out of range")
        keep = limit_per_class(labels, limit, split_seed, "stanford_cars")
        files, labels = [files[k] for k in keep], [labels[k] for k in keep]
        splits.append(
            file_images(
                "stanford_cars", split, files, labels, load_size, channels, skip_corrupt, in_memory
            )
        )
    return source(splits[0], splits[1], classes, channels, image_size, load_size)


def _torchvision_root(root: Path) -> Path:
    """torchvision reads ``<its root>/stanford_cars``: accept that folder or its parent."""
    for base, tv_root in ((root / FOLDER, root), (root, root.parent)):
        if base.name == FOLDER and all((base / f.rstrip("/")).exists() for f in FILES):
            return tv_root
    raise layout_error("stanford_cars", root, "Stanford Cars", EXPECTED)


stanford_cars.check_layout = lambda root=None, **_: _torchvision_root(
    resolve_root("stanford_cars", root, FOLDER)
)
