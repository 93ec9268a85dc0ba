"""Fill one artifact cache entry (a teacher, a pretrain stage) once, whoever asks.

:func:`obtain` returns a cached entry's ``meta.json``, or claims the entry
(:mod:`bench.core.claims`), trains it and saves it: the weights first, then ``meta.json``
(with the weights' sha256), last, so its presence marks a complete entry
(:meth:`bench.core.artifacts.Entry.cached`). While another live process holds the claim
(a second ``bench run``, a tune worker), it waits for that one rather than train the same
entry twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.core.artifacts import Entry
from bench.core.atomic import atomic_torch_save, atomic_write_json
from bench.core.claims import describe, release, try_claim
from bench.core.keys import file_sha256

log = logging.getLogger(__name__)

POLL_S = 2.0  # seconds between looks at an entry another process is training

Trained = tuple[dict[str, torch.Tensor], dict[str, Any]]  # (weights to save, meta)


def obtain(entry: Entry, what: str, train: Callable[[], Trained]) -> tuple[dict[str, Any], bool]:
    """``(meta, cached)``: the entry's metadata, and whether it was already there (False:
    this process trained it now through ``train`` and saved it). ``what`` names it in
    the log line of a wait. When ``train`` fails, the folders the claim created are
    removed again (a refused source leaves no trace in the results root)."""
    created = [p for p in (entry.folder, *list(entry.folder.parents)[:2]) if not p.exists()]
    if not claimed_or_cached(entry, what):
        return entry.meta(), True
    try:
        if entry.cached():  # finished by another process between its look and our claim
            return entry.meta(), True
        state, meta = train()
        return save(entry, state, meta), False
    except BaseException:
        release(entry.folder)
        for folder in created:  # deepest first; one that holds anything else stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        release(entry.folder)


def claimed_or_cached(entry: Entry, what: str, poll: float = POLL_S) -> bool:
    """False when ``entry`` is cached; True once this process holds its claim (it trains
    it). While another live process holds it, wait (``poll`` seconds between looks)."""
    waited = False
    while True:
        if entry.cached():
            return False
        ok, owner = try_claim(entry.folder)
        if ok:
            return True
        if not waited:
            log.warning("%s is being trained by %s: waiting for it", what, describe(owner))
            waited = True
        time.sleep(poll)


def save(entry: Entry, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Write the weights (on the CPU), then ``meta.json`` with their sha256, last."""
    atomic_torch_save(entry.weights, {k: v.cpu() for k, v in state.items()})
    meta = {**meta, "weights_sha256": file_sha256(entry.weights)}
    atomic_write_json(entry.meta_path, meta)  # written last: its presence marks a complete entry
    return meta
