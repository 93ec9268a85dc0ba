"""Generic image folders: ``root/{train,test}/<class>/*`` or one ``root/<class>/*``."""

from __future__ import annotations

from pathlib import Path

from bench.data.datasets.base import LabelListing, NotListed, SourceData
from bench.data.datasets.common import (
    CLASS_FOLDERS_RE,
    IMAGE_EXTENSIONS,
    SKIP_NOTE,
    SPLIT_FOLDERS_RE,
    check_sizes,
    check_source,
    layout_error,
    limit_per_class,
    list_dirs,
    list_images,
    resolve_root,
    resolve_source,
    source,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.memory import file_images
from bench.data.datasets.params import Channels, OpenFraction, PerClass, Size
from bench.data.datasets.registry import DATASETS
from bench.data.splits import stratified_carve

_EXTS = " ".join(sorted(IMAGE_EXTENSIONS))
FOLDER_LAYOUT = f"train/<class>/<image> and test/<class>/<image>, or <class>/<image> ({_EXTS})"
SPLIT_LAYOUT = f"train/<class>/<image> and test/<class>/<image> ({_EXTS})"


@DATASETS.register("image_folder")
def image_folder(
    root=None,
    image_size: Size = 224,
    load_size: Size | None = None,
    channels: Channels = 3,
    in_memory: bool | None = None,
    skip_corrupt: bool = False,
    test_fraction: OpenFraction = 0.2,
    split_seed: int = 0,
    train_per_class: PerClass | None = None,
    test_per_class: PerClass | None = None,
    archive: str | None = None,
) -> SourceData:
    """Any image folders: ``train/<class>/`` + ``test/<class>/``, or one ``<class>/`` tree.

    Classes are the sorted folder names. Without ``train/`` and ``test/`` the single
    folder is split per class (``test_fraction``, seeded by ``split_seed``). ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""
    root = resolve_source("image_folder", root, archive, None)
    return load_folder(
        "image_folder",
        root,
        FOLDER_LAYOUT,
        image_size=image_size,
        load_size=load_size,
        channels=channels,
        in_memory=in_memory,
        skip_corrupt=skip_corrupt,
        split_seed=split_seed,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        test_fraction=test_fraction,
    )


def load_folder(
    name: str,
    root: Path,
    expected: str,
    *,
    image_size: int,
    load_size: int | None,
    channels: int,
    in_memory: bool | None,
    skip_corrupt: bool,
    split_seed: int,
    train_per_class: int | None,
    test_per_class: int | None,
    test_fraction: float | None = None,
    flip: float = 0.5,
    what: str = "image-folder",
) -> SourceData:
    """Shared by the folder-layout loaders; ``test_fraction=None`` requires train/test."""
    load_size = check_sizes(name, image_size, load_size, channels)
    classes, kept = folder_files(
        name, root, expected, what, split_seed, train_per_class, test_per_class, test_fraction
    )
    splits = []
    for split, (files, labels) in zip(("train", "test"), kept):
        images = file_images(
            name, split, files, labels, load_size, channels, skip_corrupt, in_memory
        )
        splits.append(images)
    return source(splits[0], splits[1], classes, channels, image_size, load_size, flip)


def folder_files(
    name: str,
    root: Path,
    expected: str,
    what: str,
    split_seed: int,
    train_per_class: int | None,
    test_per_class: int | None,
    test_fraction: float | None,
) -> tuple[list[str], list[tuple[list[Path], list[int]]]]:
    """The classes and the (files, labels) of train and test that :func:`load_folder`
    decodes: folders listed, the single-folder split made, per-class limits applied."""
    classes, has_splits = folder_layout(name, root, expected, what, test_fraction)
    if has_splits:
        train = _scan(name, root / "train", classes, allow_empty=False)
        test = _scan(name, root / "test", classes, allow_empty=True)
    else:
        files, labels = _scan(name, root, classes, allow_empty=False)
        if not 0.0 < test_fraction < 1.0:
            raise DatasetError(f"{name}: test_fraction must be in (0, 1), got {test_fraction!r}")
        tr, te = stratified_carve(labels, test_fraction, split_seed)
        train = [files[i] for i in tr], [labels[i] for i in tr]
        test = [files[i] for i in te], [labels[i] for i in te]
    kept = []
    for (files, labels), limit in ((train, train_per_class), (test, test_per_class)):
        keep = limit_per_class(labels, limit, split_seed, name)
        kept.append(([files[i] for i in keep], [labels[i] for i in keep]))
    return classes, kept


def folder_labels(
    name: str,
    root,
    archive,
    default_folder: str | None,
    expected: str,
    what: str,
    *,
    split_seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    test_fraction: float | None = None,
    skip_corrupt: bool = False,
) -> LabelListing:
    """A folder loader's ``list_labels``: :func:`folder_files` without a decode. An
    archive is not unpacked for it (:class:`NotListed`)."""
    if archive is not None and str(archive) != "":
        raise NotListed("params.archive is unpacked only when the run loads it")
    root = resolve_root(name, root, default_folder)
    classes, kept = folder_files(
        name, root, expected, what, split_seed, train_per_class, test_per_class, test_fraction
    )
    return LabelListing(classes, kept[0][1], kept[1][1], note=SKIP_NOTE if skip_corrupt else None)


def folder_layout(
    name: str, root: Path, expected: str, what: str, test_fraction: float | None
) -> tuple[list[str], bool]:
    """The class folders of ``root`` and whether it has train/ + test/ (a listing of
    folders only; also the pre-run layout check). ``test_fraction=None``: train/test
    are required."""
    if not root.is_dir():
        raise layout_error(name, root, what, expected)
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train and has_test:
        classes = list_dirs(root / "train")
        if not classes:
            raise layout_error(name, root, what, expected)
        extra = sorted(set(list_dirs(root / "test")) - set(classes))
        if extra:
            raise DatasetError(f"{name}: {root / 'test'} has class folders not in train/: {extra}")
        return classes, True
    if has_train or has_test or test_fraction is None:
        raise layout_error(name, root, what, expected)
    classes = list_dirs(root)
    if not classes:
        raise layout_error(name, root, what, expected)
    return classes, False


def _scan(name: str, folder: Path, classes: list[str], allow_empty: bool):
    files: list[Path] = []
    labels: list[int] = []
    for c, cls in enumerate(classes):
        found = list_images(folder / cls) if (folder / cls).is_dir() else []
        if not found and not allow_empty:
            raise DatasetError(f"{name}: class folder {folder / cls} has no images ({_EXTS})")
        files.extend(found)
        labels.extend([c] * len(found))
    return files, labels


def _check_layout(root=None, archive: str | None = None, test_fraction: float = 0.2, **_):
    """Pre-run check: the class folders are listed, no image is read or unpacked."""
    check_source(
        "image_folder",
        root,
        archive,
        None,
        [SPLIT_FOLDERS_RE, CLASS_FOLDERS_RE],
        FOLDER_LAYOUT,
        lambda r: folder_layout("image_folder", r, FOLDER_LAYOUT, "image-folder", test_fraction),
    )


image_folder.check_layout = _check_layout


def _list_labels(
    root=None,
    archive: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    skip_corrupt: bool = False,
    **_,
) -> LabelListing:
    return folder_labels(
        "image_folder", root, archive, None, FOLDER_LAYOUT, "image-folder",
        split_seed=split_seed, train_per_class=train_per_class,
        test_per_class=test_per_class, test_fraction=test_fraction, skip_corrupt=skip_corrupt,
    )  # fmt: skip


image_folder.list_labels = _list_labels
