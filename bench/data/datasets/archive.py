"""Unpack a dataset archive (e.g. a ``.tar.gz`` in image-folder layout) once into a cache."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.data.datasets.cache import cache_dir as default_cache_dir
from bench.data.datasets.errors import DatasetError

_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


def unpack_archive(archive: Path, cache_dir: Path | None = None) -> Path:
    """Extract ``archive`` into ``cache_dir`` (default ``<cache>/archives``) unless already
    there, and return its single top folder (or the extraction folder if it has several).

    The extraction folder is named by the archive's content hash; it is filled in a temp
    folder and renamed into place, so an interrupted unpack is never reused. Members go
    through tarfile's ``data`` filter (no absolute paths, links out, or special files).
    """
    archive = Path(archive).expanduser().absolute()
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir("archives")
    stem = next(
        (archive.name[: -len(s)] for s in _SUFFIXES if archive.name.endswith(s)), archive.stem
    )
    dest = base / f"{stem}-{_sha256(archive)[:16]}"
    if not dest.is_dir():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", suffix=".partial", dir=base))
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():  # not a lost race with another process
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(f"cannot unpack archive {archive}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    entries = [e for e in dest.iterdir() if not e.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_archive(archive: Path, layouts: Sequence[Sequence[str]], expected: str) -> None:
    """Pre-run check of an archive without unpacking it: stream its member names until
    every regex of one of ``layouts`` matched some member (a listing, no decode; it stops
    early). Patterns match a member path with its top folder, if any, removed."""
    archive = Path(archive).expanduser().absolute()
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    compiled = [[re.compile(p) for p in layout] for layout in layouts]
    missing = [set(range(len(layout))) for layout in compiled]
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.lstrip("./").split("/")
                names = {"/".join(parts), "/".join(parts[1:])}
                for layout, left in zip(compiled, missing):
                    for i in list(left):
                        if any(layout[i].fullmatch(n) for n in names):
                            left.discard(i)
                    if not left:
                        return
    except (tarfile.TarError, OSError, EOFError) as exc:
        why = str(exc).splitlines()[0] if isinstance(exc, OSError) else type(exc).__name__
        raise DatasetError(f"archive {archive} is not a readable tar archive ({why})") from None
    raise DatasetError(f"archive {archive} does not hold the expected layout: {expected}")
