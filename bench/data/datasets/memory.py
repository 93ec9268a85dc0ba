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
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import bench.data.datasets.decode as decode
from bench.core.atomic import atomic_torch_save, atomic_write
from bench.core.progress import bar
from bench.data.datasets.base import FileImages, LabelledImages, Listing, SourceData, TensorImages
from bench.data.datasets.cache import cache_dir
from bench.data.datasets.common import limit_per_class, source
from bench.data.datasets.errors import DatasetError
from bench.data.datasets.mapped import MappedImages, open_mapped, write_npy_stream

log = logging.getLogger(__name__)
_CACHE_VERSION = "1"


def file_images(
    name: str,
    split: str,
    paths: Sequence[Path | str],
    labels: Sequence[int],
    load_size: int,
    channels: int,
    skip_corrupt: bool,
    in_memory: bool | None,
) -> LabelledImages:
    """A split from files. ``in_memory``: True decodes it into memory, False reads the files
    per batch; None (default) decodes small images (``load_size <= 64``) into memory and
    larger ones once into a memory-mapped disk cache (files per batch when the cache
    folder has no room for it)."""
    paths = [str(p) for p in paths]
    if in_memory is None and load_size > 64:
        mapped = mapped_images(name, split, paths, labels, load_size, channels, skip_corrupt)
        if mapped is not None:
            return mapped
        in_memory = False
    if in_memory is None or in_memory:
        return decoded_images(name, split, paths, labels, load_size, channels, skip_corrupt)
    if skip_corrupt:  # lazy split: check every file now (PIL verify), once
        ok = [
            i
            for i, p in enumerate(bar(paths, desc=f"{name} {split}: verify", unit="img"))
            if _verifies(p)
        ]
        _warn_skipped(name, split, len(paths) - len(ok), len(paths))
        paths, labels = [paths[i] for i in ok], [labels[i] for i in ok]
    return FileImages(paths, labels, load_size, channels, skip_corrupt)


def decoded_images(
    name: str,
    split: str,
    paths: list[str],
    labels: Sequence[int],
    load_size: int,
    channels: int,
    skip_corrupt: bool,
) -> TensorImages:
    """Decode every file once into a uint8 tensor, reusing a cache keyed by the files."""
    key = _cache_key(name, paths, load_size, channels, skip_corrupt)
    path = cache_dir("decoded") / f"{name}-{split}-{load_size}px-{channels}c-{key}.pt"
    blob = _read_cache(path, len(paths), load_size, channels)
    if blob is None:
        images, kept = _decode_all(name, split, paths, load_size, channels, skip_corrupt)
        _write_cache(path, {"images": images, "kept": kept})
    else:
        images, kept = blob["images"], blob["kept"]
    _warn_skipped(name, split, len(paths) - len(kept), len(paths))
    return TensorImages(images, torch.as_tensor(list(labels), dtype=torch.long)[kept])


def mapped_images(
    name: str,
    split: str,
    paths: list[str],
    labels: Sequence[int],
    load_size: int,
    channels: int,
    skip_corrupt: bool,
) -> MappedImages | None:
    """Decode every file once into ``$KA_BENCH_CACHE/decoded/<...>-<key>.npy`` (keyed by the
    files' paths, sizes and mtimes, like the in-memory cache) and map it read-only; the
    ``.kept.npy`` beside it lists the rows that decoded. None when the folder lacks room."""
    key = _cache_key(name, paths, load_size, channels, skip_corrupt)
    stem = cache_dir("decoded") / f"{name}-{split}-{load_size}px-{channels}c-{key}"
    images_path, kept_path = Path(f"{stem}.npy"), Path(f"{stem}.kept.npy")
    shape = (len(paths), channels, load_size, load_size)
    kept = _read_kept(kept_path, len(paths))
    if kept is None or open_mapped(images_path, shape) is None:
        need = int(np.prod(shape))
        folder = images_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < need * 1.05 + 2**26:
            log.warning(
                "%s %s: %.1f GB decoded cache does not fit in %s (%.1f GB free): reading the "
                "image files per batch instead",
                name, split, need / 1e9, folder, free / 1e9,
            )  # fmt: skip
            return None
        found: list[int] = []
        rows = _decode_rows(name, split, paths, load_size, channels, skip_corrupt, found)
        write_npy_stream(images_path, shape, rows)
        kept = np.asarray(found, dtype=np.int64)
        _save_npy(kept_path, kept)
    _warn_skipped(name, split, len(paths) - len(kept), len(paths))
    labels = torch.as_tensor(list(labels), dtype=torch.long)[torch.from_numpy(kept)]
    return MappedImages([images_path], labels, row=kept)


def _decode_rows(
    name, split, paths, load_size, channels, skip_corrupt, kept: list[int], chunk: int = 256
) -> Iterator[np.ndarray]:
    """Every file decoded in order (threads: PIL decodes without the GIL); a file that
    does not decode is a blank row, left out of ``kept``, or an error."""
    blank = np.zeros((channels, load_size, load_size), dtype=np.uint8)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    progress = bar(total=len(paths), desc=f"{name} {split}: decode to cache", unit="img")

    def one(path: str):
        try:
            return decode.decode_image(path, load_size, channels).numpy()
        except DatasetError as exc:
            return exc

    with ThreadPoolExecutor(max(1, min(8, cores or 1))) as pool, progress:
        for start in range(0, len(paths), chunk):
            for i, image in enumerate(pool.map(one, paths[start : start + chunk]), start):
                if isinstance(image, DatasetError):
                    if not skip_corrupt:
                        raise DatasetError(
                            f"{name}: {image} (skip_corrupt: true skips such files)"
                        ) from image
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


def _decode_all(name, split, paths, load_size, channels, skip_corrupt):
    images = torch.empty((len(paths), channels, load_size, load_size), dtype=torch.uint8)
    kept = []
    for i, p in enumerate(bar(paths, desc=f"{name} {split}: decode", unit="img")):
        try:
            images[len(kept)] = decode.decode_image(p, load_size, channels)
        except DatasetError as exc:
            if not skip_corrupt:
                raise DatasetError(f"{name}: {exc} (skip_corrupt: true skips such files)") from exc
            continue
        kept.append(i)
    if len(kept) < len(paths):
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


def listed_source(
    listing: Listing,
    *,
    load_size: int,
    channels: int,
    image_size: int,
    train_per_class: int | None,
    test_per_class: int | None,
    split_seed: int,
    skip_corrupt: bool,
    in_memory: bool | None,
) -> SourceData:
    """A split-list dataset (:class:`Listing`) as train and test images: each split's
    first ``*_per_class`` files per class after a seeded shuffle (:func:`limit_per_class`),
    then :func:`file_images`; the classes are the listing's."""
    splits = []
    for split, pairs, limit in (
        ("train", listing.train, train_per_class),
        ("test", listing.test, test_per_class),
    ):
        labels = [y for _, y in pairs]
        keep = limit_per_class(labels, limit, split_seed, listing.name)
        files, labels = [pairs[k][0] for k in keep], [labels[k] for k in keep]
        images = file_images(
            listing.name, split, files, labels, load_size, channels, skip_corrupt, in_memory
        )
        splits.append(images)
    return source(splits[0], splits[1], listing.class_names, channels, image_size, load_size)
