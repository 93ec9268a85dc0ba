"""Shared pieces of the file-based loaders: roots, size and view defaults, splits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.datasets.archive import check_archive, unpack_archive
from bench.data.datasets.base import (
    AugmentDefaults,
    LabelledImages,
    SourceData,
    TensorImages,
)
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.params import FileParams

DATA_ENV = "KA_BENCH_DATA"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_root(name: str, root: str | Path | None, default_folder: str | None) -> Path:
    """The given ``root``, else ``$KA_BENCH_DATA/<default_folder>``, else a DatasetError."""
    if root is not None and str(root) != "":
        return Path(root).expanduser().absolute()
    env = os.environ.get(DATA_ENV)
    if env and default_folder:
        return Path(env).expanduser().absolute() / default_folder
    msg = f"{name}: no data root: set `root:` in the suite's dataset entry"
    if default_folder:
        msg += f" or the {DATA_ENV} environment variable (then ${DATA_ENV}/{default_folder})"
    raise DatasetError(msg)


def resolve_source(
    name: str, root: str | Path | None, archive: str | Path | None, default_folder: str | None
) -> Path:
    """``archive`` (a ``.tar.gz`` etc.; a relative path is taken from the current directory,
    i.e. the project root when ``bench`` runs there) is unpacked once into
    ``$KA_BENCH_CACHE/archives`` and its top folder is the root; else :func:`resolve_root`."""
    if archive is None or str(archive) == "":
        return resolve_root(name, root, default_folder)
    if root is not None and str(root) != "":
        raise DatasetError(f"{name}: set either `root:` or `params.archive`, not both")
    try:
        return unpack_archive(Path(archive))
    except DatasetError as exc:
        raise DatasetError(f"{name}: {exc}") from exc


_IMAGE_RE = r"(?:.+/)?[^/]+\.(?i:" + "|".join(e[1:] for e in sorted(IMAGE_EXTENSIONS)) + ")"
# archive layouts (regexes over member paths, top folder removed) for check_archive
SPLIT_FOLDERS_RE = (rf"train/[^/]+/{_IMAGE_RE}", rf"test/[^/]+/{_IMAGE_RE}")
CLASS_FOLDERS_RE = (rf"[^/]+/{_IMAGE_RE}",)


def check_source(
    name: str,
    root: str | Path | None,
    archive: str | Path | None,
    default_folder: str | None,
    archive_layouts: Sequence[Sequence[str]],
    expected: str,
    check_root,
) -> None:
    """Pre-run layout check of a loader's data (no decode, no unpack): an ``archive`` is
    listed (:func:`bench.data.datasets.archive.check_archive`); a root goes to ``check_root``."""
    if archive is None or str(archive) == "":
        check_root(resolve_root(name, root, default_folder))
        return
    if root is not None and str(root) != "":
        raise DatasetError(f"{name}: set either `root:` or `params.archive`, not both")
    try:
        check_archive(Path(archive), archive_layouts, expected)
    except DatasetError as exc:
        raise DatasetError(f"{name}: {exc}") from exc


def layout_error(name: str, root: Path, what: str, expected: str) -> DatasetError:
    """One line naming the root and the layout it should have."""
    article = "an" if what[:1].lower() in "aeiou" else "a"
    state = "does not exist" if not root.exists() else f"is not {article} {what} root"
    return DatasetError(f"{name}: {root} {state}: expected {expected}")


def check_sizes(name: str, image_size: int, load_size: int | None, channels: int) -> int:
    """Validate the size params; return the load size (default: ``default_load_size``)."""
    if channels not in (1, 3):
        raise DatasetError(f"{name}: channels must be 1 or 3, got {channels!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"{name}: image_size must be a positive integer, got {image_size!r}")
    load = default_load_size(image_size) if load_size is None else load_size
    if not isinstance(load, int) or load < image_size:
        raise DatasetError(f"{name}: load_size must be an integer >= image_size, got {load!r}")
    return load


def default_load_size(image_size: int) -> int:
    """Small images load at their model size; large ones at the 256/224 resize ratio."""
    return image_size if image_size <= 64 else round(image_size * 256 / 224)


def augment_defaults(image_size: int, flip: float = 0.5) -> AugmentDefaults:
    """Gentle views for small (<= 64 px) images; the paper's recipe for large ones."""
    if image_size <= 64:
        return AugmentDefaults(image_size, (0.5, 1.0), flip, 0.4, 0.2, (0.1, 1.0))
    return AugmentDefaults(image_size, (0.08, 1.0), flip, 0.4, 0.5, (0.1, 2.0))


def normalization_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))


def source(
    train: LabelledImages,
    test: LabelledImages,
    class_names: Sequence[str],
    channels: int,
    image_size: int,
    load_size: int,
    flip: float = 0.5,
) -> SourceData:
    mean, std = normalization_stats(channels)
    return SourceData(
        train=train,
        test=test,
        class_names=[str(c) for c in class_names],
        channels=channels,
        load_size=load_size,
        augment=augment_defaults(image_size, flip),
        mean=mean,
        std=std,
    )


def limit_per_class(labels: Sequence[int], n: int | None, seed: int, name: str) -> list[int]:
    """Indices of the first ``n`` images of each class after a seeded shuffle (sorted)."""
    if n is None:
        return list(range(len(labels)))
    if not isinstance(n, int) or n < 1:
        raise DatasetError(f"{name}: a per-class limit must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        keep.extend(idx[:n].tolist())
    return sorted(keep)


def limited_labels(labels: Sequence[int], n: int | None, seed: int, name: str) -> list[int]:
    """The labels :func:`limit_per_class` keeps, in order."""
    return [int(labels[i]) for i in limit_per_class(labels, n, seed, name)]


SKIP_NOTE = "counts before skip_corrupt drops unreadable files"


def list_dirs(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden entries skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, f))
    return found


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 N x C x H x W to ``channels`` (grey uses PIL's ITU-R 601-2 luma)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    grey = (images.to(torch.int32) * weights).sum(1, keepdim=True)
    return ((grey + 500) // 1000).to(torch.uint8)


def resize_square(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize square uint8 N x C x S x S images to ``size`` (bicubic, antialiased)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True)
        out[i : i + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out


@dataclass
class TensorSplit:
    """One split as a dataset's own format holds it in memory: uint8 images (N x H x W,
    or N x H x W x C) and their labels; ``name`` (the loader's) for messages."""

    name: str
    data: Any
    targets: Any

    def limited(self, limit: int | None, p: FileParams, load_size: int) -> TensorImages:
        """A TensorImages at the load size and ``p.channels``, keeping ``limit`` per class
        (:func:`limit_per_class`, seeded by ``p.split_seed``)."""
        images = torch.as_tensor(self.data)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(self.targets, dtype=torch.long)
        keep = limit_per_class(labels.tolist(), limit, p.split_seed, self.name)
        keep = torch.as_tensor(keep, dtype=torch.long)
        images = to_channels(images[keep].contiguous(), p.channels)
        return TensorImages(resize_square(images, load_size), labels[keep])
