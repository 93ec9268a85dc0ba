"""Turn (file, label) lists into a split: decoded once into memory (cached on disk), or
lazy :class:`FileImages`. Corrupt files raise an error naming them, or are skipped
(``skip_corrupt``) with a logged count."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from bench.atomic import atomic_torch_save
from bench.datasets import decode
from bench.datasets.base import DatasetError, FileImages, LabelledImages, TensorImages
from bench.datasets.common import cache_dir
from bench.progress import bar

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
    """A split from files; ``in_memory`` defaults to ``load_size <= 64``."""
    paths = [str(p) for p in paths]
    if in_memory is None:
        in_memory = load_size <= 64
    if in_memory:
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
    """Atomic: a temp file in the same folder, then ``os.replace``; failures only warn."""
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
