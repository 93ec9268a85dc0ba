"""Turn (file, label) lists into a split: decoded once into memory (cached on disk),
decoded once into a memory-mapped file (:mod:`bench.data.datasets.mapped`), or lazy
:class:`FileImages`. Corrupt files raise an error naming them, or are skipped
(``skip_corrupt``) with a logged count."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import bench.data.datasets.decode as decode
from bench.core.atomic import atomic_torch_save, atomic_write
from bench.core.progress import bar
from bench.data.datasets.base import FileImages, LabelledImages, SourceData, TensorImages
from bench.data.datasets.cache import cache_dir
from bench.data.datasets.common import source
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.mapped import MappedImages, open_mapped, write_npy_stream
from bench.data.datasets.params import FileParams

log = logging.getLogger(__name__)
_CACHE_VERSION = "1"


@dataclass(frozen=True)
class FileSplit:
    """One split's image files and labels, and how to decode them; ``name`` and ``split``
    name the split in messages and in its cache files."""

    name: str
    split: str
    paths: list[str]
    labels: list[int]
    load_size: int
    channels: int
    skip_corrupt: bool

    def cache_stem(self) -> Path:
        """``$KA_BENCH_CACHE/decoded/<name>-<split>-<size>px-<c>c-<key>``, keyed by the
        files' paths, sizes and mtimes (an image file that changes is decoded again)."""
        key = _cache_key(self.name, self.paths, self.load_size, self.channels, self.skip_corrupt)
        return cache_dir("decoded") / (
            f"{self.name}-{self.split}-{self.load_size}px-{self.channels}c-{key}"
        )

    def shape(self) -> tuple[int, int, int, int]:
        return len(self.paths), self.channels, self.load_size, self.load_size

    def kept_labels(self, kept) -> torch.Tensor:
        """The labels of the rows in ``kept`` (the files that decoded); warns of the rest."""
        _warn_skipped(self.name, self.split, len(self.paths) - len(kept), len(self.paths))
        return torch.as_tensor(self.labels, dtype=torch.long)[torch.as_tensor(kept)]

    def corrupt(self, exc: DatasetError) -> DatasetError:
        return DatasetError(f"{self.name}: {exc} (skip_corrupt: true skips such files)")


def file_images(files: FileSplit, in_memory: bool | None) -> LabelledImages:
    """A split from files. ``in_memory``: True decodes it into memory, False reads the files
    per batch; None (default) decodes small images (``load_size <= 64``) into memory and
    larger ones once into a memory-mapped disk cache (files per batch when the cache
    folder has no room for it)."""
    if in_memory is None and files.load_size > 64:
        mapped = mapped_images(files)
        if mapped is not None:
            return mapped
        in_memory = False
    if in_memory is None or in_memory:
        return decoded_images(files)
    paths, labels = files.paths, files.labels
    if files.skip_corrupt:  # lazy split: check every file now (PIL verify), once
        desc = f"{files.name} {files.split}: verify"
        ok = [i for i, p in enumerate(bar(paths, desc=desc, unit="img")) if _verifies(p)]
        _warn_skipped(files.name, files.split, len(paths) - len(ok), len(paths))
        paths, labels = [paths[i] for i in ok], [labels[i] for i in ok]
    return FileImages(paths, labels, files.load_size, files.channels, files.skip_corrupt)


def decoded_images(files: FileSplit) -> TensorImages:
    """Decode every file once into a uint8 tensor, reusing a cache keyed by the files."""
    path = Path(f"{files.cache_stem()}.pt")
    blob = _read_cache(path, len(files.paths), files.load_size, files.channels)
    if blob is None:
        images, kept = _decode_all(files)
        _write_cache(path, {"images": images, "kept": kept})
    else:
        images, kept = blob["images"], blob["kept"]
    return TensorImages(images, files.kept_labels(kept))


def mapped_images(files: FileSplit) -> MappedImages | None:
    """Decode every file once into ``<cache stem>.npy`` (:meth:`FileSplit.cache_stem`, like
    the in-memory cache) and map it read-only; the ``.kept.npy`` beside it lists the rows
    that decoded. None when the folder lacks room."""
    stem = files.cache_stem()
    images_path, kept_path = Path(f"{stem}.npy"), Path(f"{stem}.kept.npy")
    kept = _read_kept(kept_path, len(files.paths))
    if kept is None or open_mapped(images_path, files.shape()) is None:
        if not _room_for(files, images_path.parent):
            return None
        found: list[int] = []
        write_npy_stream(images_path, files.shape(), _decode_rows(files, found))
        kept = np.asarray(found, dtype=np.int64)
        _save_npy(kept_path, kept)
    return MappedImages([images_path], files.kept_labels(torch.from_numpy(kept)), row=kept)


def _room_for(files: FileSplit, folder: Path) -> bool:
    """Whether ``folder`` has room for the split's decoded cache (warns when not)."""
    need = int(np.prod(files.shape()))
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need * 1.05 + 2**26:
        log.warning(
            "%s %s: %.1f GB decoded cache does not fit in %s (%.1f GB free): reading the "
            "image files per batch instead",
            files.name, files.split, need / 1e9, folder, free / 1e9,
        )  # fmt: skip
        return False
    return True


def _decode_rows(files: FileSplit, kept: list[int], chunk: int = 256) -> Iterator[np.ndarray]:
    """Every file decoded in order (threads: PIL decodes without the GIL); a file that
    does not decode is a blank row, left out of ``kept``, or an error."""
    blank = np.zeros(files.shape()[1:], dtype=np.uint8)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    desc = f"{files.name} {files.split}: decode to cache"
    progress = bar(total=len(files.paths), desc=desc, unit="img")

    def one(path: str):
        try:
            return decode.decode_image(path, files.load_size, files.channels).numpy()
        except DatasetError as exc:
            return exc

    with ThreadPoolExecutor(max(1, min(8, cores or 1))) as pool, progress:
        for start in range(0, len(files.paths), chunk):
            for i, image in enumerate(pool.map(one, files.paths[start : start + chunk]), start):
                if isinstance(image, DatasetError):
                    if not files.skip_corrupt:
                        raise files.corrupt(image) from image
                    image = blank
                else:
                    kept.append(i)
                progress.update(1)
                yield image


def _read_kept(path: Path, n: int) -> np.ndarray | None:
    try:
        kept = np.load(path)
    except (OSError, ValueError):
        return None
    ok = kept.dtype == np.int64 and kept.ndim == 1
    return kept if ok and (len(kept) == 0 or (kept.min() >= 0 and kept.max() < n)) else None


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (:func:`bench.core.atomic.atomic_write`)."""
    atomic_write(path, lambda fh: np.save(fh, array))


def _decode_all(files: FileSplit) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.empty(files.shape(), dtype=torch.uint8)
    kept = []
    desc = f"{files.name} {files.split}: decode"
    for i, p in enumerate(bar(files.paths, desc=desc, unit="img")):
        try:
            images[len(kept)] = decode.decode_image(p, files.load_size, files.channels)
        except DatasetError as exc:
            if not files.skip_corrupt:
                raise files.corrupt(exc) from exc
            continue
        kept.append(i)
    if len(kept) < len(files.paths):
        images = images[: len(kept)].clone()
    return images, torch.as_tensor(kept, dtype=torch.long)


def _cache_key(name, paths, load_size, channels, skip_corrupt) -> str:
    h = hashlib.sha256(f"{_CACHE_VERSION}|{name}|{load_size}|{channels}|{skip_corrupt}".encode())
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise DatasetError(f"{name}: cannot read image {p}: {exc}") from exc
        h.update(f"\n{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _read_cache(path: Path, n: int, load_size: int, channels: int) -> dict | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        images, kept = blob["images"], blob["kept"]
        ok = (
            images.dtype == torch.uint8
            and tuple(images.shape[1:]) == (channels, load_size, load_size)
            and len(images) == len(kept) <= n
        )
    except Exception as exc:  # an unreadable cache is rebuilt, never trusted
        log.warning("ignoring unreadable image cache %s: %s", path, exc)
        return None
    return blob if ok else None


def _write_cache(path: Path, blob: dict) -> None:
    """Atomic (:func:`bench.core.atomic.atomic_torch_save`); failures only warn."""
    try:
        atomic_torch_save(path, blob)
    except OSError as exc:
        log.warning("could not write image cache %s: %s", path, exc)


def _verifies(path: str) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception:  # PIL raises many types for broken files
        return False
    return True


def _warn_skipped(name: str, split: str, skipped: int, total: int) -> None:
    if skipped:
        log.warning("%s %s: skipped %d unreadable image(s) of %d", name, split, skipped, total)


def files_source(
    name: str,
    class_names: list[str],
    splits: Sequence[tuple[Sequence[Path | str], Sequence[int]]],
    p: FileParams,
    load_size: int,
    flip: float = 0.5,
) -> SourceData:
    """The train and test (files, labels) of a file dataset, per-class limits applied,
    as a :class:`SourceData` (each split through :func:`file_images`)."""
    train, test = (
        file_images(
            FileSplit(
                name, split, [str(f) for f in files], list(labels), load_size, p.channels,
                p.skip_corrupt,
            ),
            p.in_memory,
        )
        for split, (files, labels) in zip(("train", "test"), splits)
    )  # fmt: skip
    return source(train, test, class_names, p.channels, p.image_size, load_size, flip)
