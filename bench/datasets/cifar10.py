"""CIFAR-10 from an image-folder copy (``train/<class>/``, ``test/<class>/``) or from
torchvision's python format (``cifar-10-batches-py/``, read by torchvision)."""

from __future__ import annotations

from bench.datasets.base import DatasetError, SourceData
from bench.datasets.common import check_sizes, resolve_source, source, tensor_split
from bench.datasets.image_folder import SPLIT_LAYOUT, load_folder
from bench.datasets.registry import DATASETS

BATCHES = "cifar-10-batches-py"
EXPECTED = f"{SPLIT_LAYOUT} (image folders), or {BATCHES}/ (torchvision's python format)"


@DATASETS.register("cifar10")
def cifar10(
    root=None,
    image_size: int = 32,
    load_size: int | None = None,
    channels: int = 3,
    in_memory: bool | None = None,
    skip_corrupt: bool = False,
    split_seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    archive: str | None = None,
) -> SourceData:
    """CIFAR-10 at 32 px: image folders or torchvision's python batches.

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
    from bench.compat import import_torchvision

    reader = import_torchvision().datasets.CIFAR10
    splits, classes = [], None
    for train, limit in ((True, train_per_class), (False, test_per_class)):
        try:
            ds = reader(str(root), train=train, download=False)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise DatasetError(
                f"cifar10: {root / BATCHES} is not a complete CIFAR-10 python-format folder "
                f"(torchvision: {exc}): expected data_batch_1..5, test_batch, batches.meta"
            ) from exc
        classes = list(ds.classes)
        splits.append(
            tensor_split(ds.data, ds.targets, limit, split_seed, load_size, channels, "cifar10")
        )
    return source(splits[0], splits[1], classes, channels, image_size, load_size)
