"""What a dataset loader returns: labelled images at a fixed load size, plus defaults.

A loader (:class:`bench.data.datasets.loader.Dataset`) is registered in
``bench.data.datasets.DATASETS`` by name. It takes the ``root`` (a local path or ``None``)
and its loader-specific ``params`` and returns a :class:`SourceData`. Everything after that (validation carve-out, teacher tasks, union
label order, views) is shared code in ``bench.data.prepare``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from bench.data.datasets.decode import decode_image


class LabelledImages(Dataset):
    """Abstract split: ``ds[i] -> (uint8 tensor C x S x S, int label)`` at the load size."""

    labels: torch.Tensor  # int64, one per image, known without decoding images

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | torch.Tensor) -> LabelledImages:
        raise NotImplementedError


class TensorImages(LabelledImages):
    """Images held in memory as one uint8 tensor ``N x C x S x S``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorImages wants a uint8 tensor N x C x H x W")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index``, in that order, as one tensor."""
        return self.images[index]

    def subset(self, index):
        index = torch.as_tensor(index, dtype=torch.long)
        return TensorImages(self.images[index], self.labels[index])


class FileImages(LabelledImages):
    """Images decoded from files on access, resized (short side) and centre-cropped to
    ``load_size`` so that batches stack; random crops happen later, on the batch."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | torch.Tensor,
        load_size: int,
        channels: int = 3,
        skip_corrupt: bool = False,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} files but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.load_size = load_size
        self.channels = channels
        self.skip_corrupt = skip_corrupt

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode_image(self.paths[i], self.load_size, self.channels), int(self.labels[i])

    def subset(self, index):
        index = [int(i) for i in torch.as_tensor(index, dtype=torch.long)]
        return FileImages(
            [self.paths[i] for i in index],
            self.labels[index],
            self.load_size,
            self.channels,
            self.skip_corrupt,
        )


@dataclass(frozen=True)
class AugmentDefaults:
    """A dataset's default view recipe (methods.md, "Views"), sized for its images.

    ``image_size`` is what models see; ``load_size`` (>= image_size) is what the loader
    stores; training views RandomResizedCrop from it, test views centre-crop it.
    """

    image_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: float = 0.5
    jitter: float = 0.4  # brightness / contrast / saturation strength
    blur: float = 0.5  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)


@dataclass
class SourceData:
    """One loaded dataset: train and test splits over ``class_names``."""

    train: LabelledImages
    test: LabelledImages
    class_names: list[str]
    channels: int
    load_size: int
    augment: AugmentDefaults
    mean: tuple[float, ...] = field(default=(0.5,))
    std: tuple[float, ...] = field(default=(0.5,))
    # Natural teacher tasks (``tasks: natural``), e.g. one group per merged dataset.
    groups: list[list[int]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Listing:
    """What a file loader's split lists say, read without decoding an image: the
    dataset's folder, its layout in words, the classes, and each split's (file, label)
    pairs (labels 0-based, in list order; files not checked for existence)."""

    name: str
    root: Path
    layout: str
    class_names: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]

    def counts(self) -> tuple[int, int, int]:
        """(classes, train images, test images)."""
        return len(self.class_names), len(self.train), len(self.test)


@dataclass
class LabelListing:
    """What a loader keeps, as labels only (no image read): the classes and each split's
    labels in the loader's order, per-class limits applied (a loader's ``list_labels``
    hook; the dry-run lays them out as ``bench.data.prepare.prepare`` does). ``note``: a caveat
    on the counts (e.g. unreadable files that ``skip_corrupt`` would still drop)."""

    class_names: list[str]
    train: list[int]
    test: list[int]
    groups: list[list[int]] | None = None
    note: str | None = None


class NotListed(Exception):
    """A loader's ``list_labels`` cannot answer without loading the data (the message says
    why, in a few words)."""
