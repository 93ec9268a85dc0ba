"""Stable content keys: a hash of canonical JSON (sorted keys, no whitespace), and what
a key leaves out: where the data lives.

Location-only settings say where a dataset's files are, never which images or labels it
gives, so they stay out of every run, teacher and pretrain-stage key (moving the data
directory keeps finished results):

* ``root`` of a dataset entry (and of each ``merge`` part),
* ``params.archive`` (a ``.tar.gz`` unpacked into a cache; an alternative to ``root``),
* ``params.in_memory`` (decoded into memory, memory-mapped or read per batch: the same
  pixels either way).

A ``pretrained:`` file's path is a location too: keys hash the file's content (its
sha256, :func:`file_sha256`) in place of the path (:func:`weights_by_content`), so moving
the file keeps finished runs and teachers, and overwriting it re-runs what used it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError

LOCATION_ONLY = frozenset({"root"})  # keys of a dataset entry (or merge part)
LOCATION_ONLY_PARAMS = frozenset({"archive", "in_memory"})  # keys of its ``params``


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def dataset_identity_dump(dataset: dict[str, Any]) -> dict[str, Any]:
    """A dataset entry (name, root, params, ...) without its location-only settings,
    ``merge`` parts (``params.parts``) included, recursively."""
    out = {k: v for k, v in dataset.items() if k not in LOCATION_ONLY}
    params = dataset.get("params")
    if isinstance(params, dict):
        params = {k: v for k, v in params.items() if k not in LOCATION_ONLY_PARAMS}
        if isinstance(params.get("parts"), list):
            params["parts"] = [
                dataset_identity_dump(p) if isinstance(p, dict) else p for p in params["parts"]
            ]
        out["params"] = params
    return out


def without_locations(dump: dict[str, Any]) -> dict[str, Any]:
    """A spec's dump with :func:`dataset_identity_dump` applied to its ``dataset`` and to
    its nested pretrain stage's ``dataset``."""
    out = dict(dump)
    if isinstance(out.get("dataset"), dict):
        out["dataset"] = dataset_identity_dump(out["dataset"])
    if isinstance(out.get("pretrain"), dict):
        out["pretrain"] = without_locations(out["pretrain"])
    return out


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes, hashed once per process per (path, size,
    mtime): a file rewritten in place is hashed again. :class:`ConfigError` naming the
    file when it cannot be read."""
    file = Path(path).expanduser()
    try:
        st = file.stat()
        if not file.is_file():
            raise IsADirectoryError("not a file")
        ident = (str(file.resolve()), st.st_size, st.st_mtime_ns)
        with _DIGESTS_LOCK:
            if ident in _DIGESTS:
                return _DIGESTS[ident]
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise ConfigError(f"pretrained: {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"pretrained: {path}: cannot read it ({exc.strerror or exc})") from None
    digest = h.hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[ident] = digest
    return digest


def weights_by_content(dump: dict[str, Any]) -> dict[str, Any]:
    """A run or teacher spec's dump with every ``pretrained:`` path (a teacher's
    ``pretrained``, a run's ``student.pretrained`` and ``teachers.pretrained``, one or a
    list) replaced by ``sha256:<digest of the file>``; unset ones stay None, so specs
    without files keep their keys."""

    def swap(value: Any) -> Any:
        if isinstance(value, list):
            return [swap(v) for v in value]
        return f"sha256:{file_sha256(value)}" if isinstance(value, str) and value else value

    out = dict(dump)
    if "pretrained" in out:
        out["pretrained"] = swap(out["pretrained"])
    for part in ("student", "teachers"):
        if isinstance(out.get(part), dict) and "pretrained" in out[part]:
            out[part] = {**out[part], "pretrained": swap(out[part]["pretrained"])}
    return out


def weights_paths(dump: dict[str, Any]) -> list[str]:
    """Every ``pretrained:`` path a spec's dump names (those :func:`weights_by_content`
    replaces)."""
    found = []
    for value in (
        dump.get("pretrained"),
        (dump.get("student") or {}).get("pretrained"),
        (dump.get("teachers") or {}).get("pretrained"),
    ):
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v:
                found.append(v)
    return found
