"""Generic image folders: ``root/{train,test}/<class>/*`` or one ``root/<class>/*``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from bench.data.datasets.base import LabelListing, NotListed, SourceData
from bench.data.datasets.common import (
    CLASS_FOLDERS_RE,
    IMAGE_EXTENSIONS,
    SPLIT_FOLDERS_RE,
    check_sizes,
    check_source,
    layout_error,
    limit_per_class,
    list_dirs,
    list_images,
    resolve_root,
    resolve_source,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.loader import FileDataset, skip_note
from bench.data.datasets.memory import files_source
from bench.data.datasets.params import FileParams, OpenFraction
from bench.data.splits import stratified_carve

_EXTS = " ".join(sorted(IMAGE_EXTENSIONS))
FOLDER_LAYOUT = f"train/<class>/<image> and test/<class>/<image>, or <class>/<image> ({_EXTS})"
SPLIT_LAYOUT = f"train/<class>/<image> and test/<class>/<image> ({_EXTS})"


class FolderParams(FileParams):
    archive: str | None = None  # instead of ``root``: a .tar.gz of the layout


class FolderDataset(FileDataset):
    """Image folders ``train/<class>/`` + ``test/<class>/`` (classes: the sorted folder
    names), from ``root`` or from ``params.archive``, unpacked once into the cache. A
    subclass may read a native format instead when :meth:`locate` finds one.

    ``expected``: the layout in words for errors; ``what``: the dataset in words;
    ``default_folder``: under ``$KA_BENCH_DATA`` when no root is given;
    ``archive_layouts``: member-path regexes an archive may match (pre-run check)."""

    Params: ClassVar[type[FolderParams]] = FolderParams
    expected: ClassVar[str] = SPLIT_LAYOUT
    what: ClassVar[str] = "image-folder"
    default_folder: ClassVar[str | None] = None
    archive_layouts: ClassVar[tuple[tuple[str, ...], ...]] = (SPLIT_FOLDERS_RE,)

    def locate(self, root: Path) -> tuple[Path, bool]:
        """The root to read and whether it holds the native format (default: never)."""
        return root, False

    def load_native(self, root: Path, p: FolderParams, load_size: int) -> SourceData:
        raise NotImplementedError(f"{type(self).__name__}.load_native")

    def check_native(self, root: Path) -> None:
        """Pre-run check of a native-format root (its files present, nothing read)."""

    def native_labels(self, root: Path, p: FolderParams) -> LabelListing:
        raise NotListed("the native format is listed only when the run loads it")

    def test_fraction(self, p: FolderParams) -> float | None:
        """The single-folder split's test share; None: train/ and test/ are required."""
        return None

    def load(self, root, p: FolderParams) -> SourceData:
        root, native = self.locate(resolve_source(self.name, root, p.archive, self.default_folder))
        load_size = check_sizes(self.name, p.image_size, p.load_size, p.channels)
        if native:
            return self.load_native(root, p, load_size)
        classes, kept = self.folder_files(root, p)
        return files_source(self.name, classes, kept, p, load_size, self.flip)

    def list_labels(self, root, p: FolderParams) -> LabelListing:
        """Folders listed (no decode); an archive is not unpacked for it (:class:`NotListed`)."""
        if p.archive is not None and str(p.archive) != "":
            raise NotListed("params.archive is unpacked only when the run loads it")
        root, native = self.locate(resolve_root(self.name, root, self.default_folder))
        if native:
            return self.native_labels(root, p)
        classes, kept = self.folder_files(root, p)
        return LabelListing(classes, kept[0][1], kept[1][1], note=skip_note(p))

    def check_layout(self, root, p: FolderParams) -> None:
        """Pre-run check: the class folders (or the native files) are listed; no image is
        read, no archive unpacked."""

        def check_root(found: Path) -> None:
            found, native = self.locate(found)
            if native:
                self.check_native(found)
            else:
                self.folder_layout(found, p)

        check_source(
            self.name, root, p.archive, self.default_folder, self.archive_layouts,
            self.expected, check_root,
        )  # fmt: skip

    def folder_layout(self, root: Path, p: FolderParams) -> tuple[list[str], bool]:
        return folder_layout(self.name, root, self.expected, self.what, self.test_fraction(p))

    def folder_files(
        self, root: Path, p: FolderParams
    ) -> tuple[list[str], list[tuple[list[Path], list[int]]]]:
        """The classes and the (files, labels) of train and test that :meth:`load`
        decodes: folders listed, the single-folder split made, per-class limits applied."""
        name = self.name
        classes, has_splits = self.folder_layout(root, p)
        if has_splits:
            train = _scan(name, root / "train", classes, allow_empty=False)
            test = _scan(name, root / "test", classes, allow_empty=True)
        else:
            files, labels = _scan(name, root, classes, allow_empty=False)
            test_fraction = self.test_fraction(p)
            if not 0.0 < test_fraction < 1.0:
                raise DatasetError(
                    f"{name}: test_fraction must be in (0, 1), got {test_fraction!r}"
                )
            tr, te = stratified_carve(labels, test_fraction, p.split_seed)
            train = [files[i] for i in tr], [labels[i] for i in tr]
            test = [files[i] for i in te], [labels[i] for i in te]
        kept = []
        for (files, labels), limit in ((train, p.train_per_class), (test, p.test_per_class)):
            keep = limit_per_class(labels, limit, p.split_seed, name)
            kept.append(([files[i] for i in keep], [labels[i] for i in keep]))
        return classes, kept


class ImageFolder(FolderDataset, name="image_folder"):
    """Any image folders: ``train/<class>/`` + ``test/<class>/``, or one ``<class>/`` tree.

    Classes are the sorted folder names. Without ``train/`` and ``test/`` the single
    folder is split per class (``test_fraction``, seeded by ``split_seed``). ``archive``
    (instead of ``root``): a .tar.gz of this layout, unpacked once into the cache."""

    class Params(FolderParams):
        test_fraction: OpenFraction = 0.2

    expected = FOLDER_LAYOUT
    archive_layouts = (SPLIT_FOLDERS_RE, CLASS_FOLDERS_RE)

    def test_fraction(self, p: Params) -> float | None:
        return p.test_fraction


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
