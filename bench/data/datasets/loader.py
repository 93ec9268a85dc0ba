"""Dataset loaders as classes: one subclass per dataset, one instance of it registered in
``bench.data.datasets.DATASETS`` under the ``name`` given in its class line.

A suite's dataset entry ``{name: ..., root: ..., params: {...}}`` reaches the loader as
``DATASETS.get(name)(root, **params)``; the params are the loader's :class:`Params`
model (typed: the dry-run validates them against it, naming the key, before any data is
read). The hooks, each with a default here, are what the rest of the harness asks:

- :meth:`Dataset.load`: the train and test images (:class:`SourceData`);
- :meth:`Dataset.check_layout`: the pre-run look at the root (listings only, no decode);
- :meth:`Dataset.list_labels`: each split's labels without decoding (the dry-run's counts);
- :meth:`Dataset.natural_tasks`: how many ``tasks: natural`` teachers, without loading;
- :meth:`Dataset.parts`: the datasets this one is made of (a merge), checked like its own.

To add a dataset, write one new file in ``bench/data/datasets/`` (and import it in that
package's ``__init__``) with a subclass. Image files with split lists take
:class:`FileDataset`, which holds the shared params (sizes, channels, caching, per-class
limits) and the decode / cache / split loop, and needs only ``list_files``::

    class Flowers(FileDataset, name="flowers"):
        \"\"\"Oxford Flowers 102, the official split.\"\"\"

        def list_files(self, root, p: FileParams) -> Listing:
            ...  # the split lists read into (file, label) pairs; DatasetError if malformed

        def check_layout(self, root, p: FileParams) -> None:
            ...  # raise DatasetError naming the expected layout

Image folders (``train/<class>/``, ``test/<class>/``) take
:class:`bench.data.datasets.image_folder.FolderDataset`; data that is not image files
subclasses :class:`Dataset` and writes :meth:`Dataset.load` (see ``digits.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from bench.data.datasets.base import LabelListing, Listing, NotListed, SourceData
from bench.data.datasets.common import SKIP_NOTE, check_sizes, limit_per_class
from bench.data.datasets.memory import files_source
from bench.data.datasets.params import FileParams, Params
from bench.data.datasets.registry import DATASETS


class Dataset:
    """A dataset loader (this module's docstring says how to write one)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            DATASETS.register(name)(cls())

    def __call__(self, root: str | Path | None = None, **params: Any) -> SourceData:
        """Load the data: ``root`` and the suite entry's ``params``."""
        return self.load(root, self.parse(params))

    def parse(self, params: Mapping[str, Any], lenient: bool = False) -> Params:
        """``params`` as a :class:`Params`, defaults filled, values not validated (the
        loader checks them where it uses them, with a :class:`DatasetError`; the dry-run
        validates them first, :meth:`validate`). An unknown key is a TypeError, as for a
        function's keyword argument (``lenient``: ignored)."""
        fields = self.Params.model_fields
        unknown = [k for k in params if k not in fields]
        if unknown and not lenient:
            raise TypeError(f"{self.name}() got an unexpected keyword argument {unknown[0]!r}")
        return self.Params.model_construct(**{k: v for k, v in params.items() if k in fields})

    def validate(self, params: Mapping[str, Any]) -> Params:
        """``params`` validated against :class:`Params` (strict; pydantic's
        ValidationError names the key and the value)."""
        return self.Params.model_validate(params)

    def load(self, root: str | Path | None, p: Any) -> SourceData:
        raise NotImplementedError(f"{type(self).__name__}.load")

    def check_layout(self, root: str | Path | None, p: Any) -> None:
        """Pre-run check of the data's layout, listing folders and files only (nothing is
        decoded or unpacked); a :class:`DatasetError` names what is wrong. Default: none."""

    def list_labels(self, root: str | Path | None, p: Any) -> LabelListing:
        """Each split's labels as :meth:`load` keeps them, without decoding an image (the
        dry-run's counts); :class:`NotListed` when that needs the data loaded."""
        raise NotListed(f"loader {self.name!r} has no label listing")

    def list_files(self, root: str | Path | None, p: Any) -> Listing:
        """The split lists as (file, label) pairs, unlimited (``bench data check``)."""
        raise NotListed(f"loader {self.name!r} does not list its files")

    def lists_files(self) -> bool:
        """Whether :meth:`list_files` answers (the loader overrides it)."""
        return type(self).list_files is not Dataset.list_files

    def natural_tasks(self, p: Any) -> int | None:
        """``tasks: natural`` teachers counted without loading the data; None: only the
        loaded data's groups tell."""
        return None

    def parts(self, p: Any) -> list[dict[str, Any]]:
        """Dataset entries (``name``, ``root``, ``params``) this one is made of."""
        return []


class FileDataset(Dataset):
    """Image files listed by split (:meth:`list_files`), decoded once at the load size
    into memory or a memory-mapped cache (:func:`bench.data.datasets.memory.file_images`),
    the first ``*_per_class`` of each class kept after a shuffle seeded by ``split_seed``.
    ``flip``: the default views' horizontal-flip probability."""

    Params: ClassVar[type[FileParams]] = FileParams
    flip: ClassVar[float] = 0.5

    def load(self, root, p: FileParams) -> SourceData:
        load_size = check_sizes(self.name, p.image_size, p.load_size, p.channels)
        listing = self.list_files(root, p)
        splits = [
            _limited(pairs, limit, p.split_seed, listing.name)
            for pairs, limit in (
                (listing.train, p.train_per_class),
                (listing.test, p.test_per_class),
            )
        ]
        return files_source(listing.name, listing.class_names, splits, p, load_size, self.flip)

    def list_labels(self, root, p: FileParams) -> LabelListing:
        listing = self.list_files(root, p)
        train, test = (
            _limited(pairs, limit, p.split_seed, self.name)[1]
            for pairs, limit in (
                (listing.train, p.train_per_class),
                (listing.test, p.test_per_class),
            )
        )
        return LabelListing(listing.class_names, train, test, note=skip_note(p))


def _limited(pairs: list[tuple[Path, int]], limit: int | None, seed: int, name: str):
    """(files, labels) of ``pairs`` after :func:`limit_per_class`."""
    labels = [y for _, y in pairs]
    keep = limit_per_class(labels, limit, seed, name)
    return [pairs[k][0] for k in keep], [labels[k] for k in keep]


def skip_note(p: FileParams) -> str | None:
    """The listing's caveat when ``skip_corrupt`` may still drop files."""
    return SKIP_NOTE if p.skip_corrupt else None
