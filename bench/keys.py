"""Stable content keys: a hash of canonical JSON (sorted keys, no whitespace), and what
a key leaves out: where the data lives.

Location-only settings say where a dataset's files are, never which images or labels it
gives, so they stay out of every run, teacher and pretrain-stage key (moving the data
directory keeps finished results):

* ``root`` of a dataset entry (and of each ``merge`` part),
* ``params.archive`` (a ``.tar.gz`` unpacked into a cache; an alternative to ``root``),
* ``params.in_memory`` (decoded into memory, memory-mapped or read per batch: the same
  pixels either way).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
