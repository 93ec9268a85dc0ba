"""Decoded images on disk, memory-mapped: one uint8 ``.npy`` (N x C x S x S) per split.

The file is decoded once (the same pixels as reading the image files), written atomically,
and opened read-only with ``numpy.load(mmap_mode="r")``: every process that trains on it
(packed workers, DataLoader workers) shares the operating system's page cache instead of
holding its own copy, and subsets are index views, never copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.core.atomic import atomic_write
from bench.data.datasets.base import FileImages, LabelledImages, TensorImages
from bench.data.datasets.errors import DatasetError


class MappedImages(LabelledImages):
    """Rows of one or more memory-mapped ``.npy`` files (several after a merge)."""

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int] | torch.Tensor,
        part: np.ndarray | None = None,
        row: np.ndarray | None = None,
    ) -> None:
        self.files = tuple(str(f) for f in files)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        n = len(self.labels)
        self.part = np.zeros(n, dtype=np.int64) if part is None else np.asarray(part, np.int64)
        self.row = np.arange(n, dtype=np.int64) if row is None else np.asarray(row, np.int64)
        if not len(self.part) == len(self.row) == n:
            raise ValueError(f"{len(self.row)} rows but {n} labels")
        self._arrays: dict[int, np.ndarray] = {}

    def array(self, part: int = 0) -> np.ndarray:
        """The memory map of file ``part`` (opened on first use in each process)."""
        if part not in self._arrays:
            self._arrays[part] = np.load(self.files[part], mmap_mode="r")
        return self._arrays[part]

    def __getstate__(self) -> dict:  # pickled by path: a worker maps the file itself
        return {**self.__dict__, "_arrays": {}}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.array(self.array(self.part[i])[self.row[i]])), int(
            self.labels[i]
        )

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index`` (in that order) as one uint8 tensor: one gather per file."""
        index = np.asarray(index, dtype=np.int64)
        parts, rows = self.part[index], self.row[index]
        first = self.array(0)
        out = np.empty((len(index), *first.shape[1:]), dtype=np.uint8)
        for p in np.unique(parts):
            mask = parts == p
            out[mask] = self.array(int(p))[rows[mask]]
        return torch.from_numpy(out)

    def subset(self, index) -> MappedImages:
        index = torch.as_tensor(index, dtype=torch.long)
        rows = index.numpy()
        return MappedImages(self.files, self.labels[index], self.part[rows], self.row[rows])

    @classmethod
    def concat(cls, splits: list[MappedImages], labels: torch.Tensor) -> MappedImages:
        """One split over the files of several (a merge), labels given."""
        files: list[str] = []
        parts, rows = [], []
        for s in splits:
            parts.append(s.part + len(files))
            rows.append(s.row)
            files.extend(s.files)
        return cls(files, labels, np.concatenate(parts), np.concatenate(rows))


def write_npy_stream(path: Path, shape: tuple[int, ...], rows: Iterable[np.ndarray]) -> None:
    """Write ``shape[0]`` uint8 ``rows`` (each ``shape[1:]``) as one ``.npy``, atomically: a
    temp file in the same folder, streamed (never all in memory; a full disk raises
    OSError, where a write through a memory map would crash), then renamed into place
    (:func:`bench.core.atomic.atomic_write`)."""

    def write(f) -> None:
        header = {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(f, header)
        written = 0
        for r in rows:
            r = np.ascontiguousarray(r, dtype=np.uint8)
            if r.shape != tuple(shape[1:]):
                raise ValueError(f"row of shape {r.shape}, expected {tuple(shape[1:])}")
            f.write(r.tobytes())
            written += 1
        if written != shape[0]:
            raise ValueError(f"{written} rows written, expected {shape[0]}")

    atomic_write(path, write)


def open_mapped(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The read-only map of ``path`` if it is a uint8 array of ``shape``, else None."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return array if array.dtype == np.uint8 and array.shape == tuple(shape) else None


def concat_images(splits: list[LabelledImages], offsets: list[int]) -> LabelledImages:
    """One split from several, labels shifted by each part's class offset."""
    labels = torch.cat([s.labels + off for s, off in zip(splits, offsets)])
    if all(isinstance(s, TensorImages) for s in splits):
        return TensorImages(torch.cat([s.images for s in splits]), labels)
    if all(isinstance(s, MappedImages) for s in splits):
        return MappedImages.concat(splits, labels)
    if all(isinstance(s, FileImages) for s in splits):
        first = splits[0]
        paths = [p for s in splits for p in s.paths]
        return FileImages(paths, labels, first.load_size, first.channels, first.skip_corrupt)
    raise DatasetError(
        "merge: parts mix in-memory, memory-mapped and file-backed images; set in_memory alike"
    )
