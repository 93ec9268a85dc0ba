"""Claim files: at most one process executes a run key (or trains a teacher) at a time.

Two ``bench run`` (or a ``bench tune`` beside a ``bench run``) on one results directory
each claim a key before executing it: ``<folder>/claim`` is created atomically and only
if absent (``O_CREAT | O_EXCL`` temp file, hard-linked into place: never half-written),
holding the owner's host, pid and start time. A second process finds the file and skips (runs) or waits (teachers). A claim whose
owner is a dead process on this host (``kill -9``) is stale and taken over, under an
``flock`` so two processes never take over the same one. Claims are released (removed)
when the run finishes or fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

CLAIM_NAME = "claim"


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read_claim(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def is_stale(owner: dict[str, Any] | None) -> bool:
    """A claim of a process on this host that no longer exists (or an unreadable claim
    left by a crash between create and write)."""
    if owner is None:
        return True
    if owner.get("host") != socket.gethostname():
        return False  # cannot tell from here: another host's claim is respected
    pid = owner.get("pid")
    return not isinstance(pid, int) or (pid != os.getpid() and not _alive(pid))


def describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "an unknown process"
    return f"pid {owner.get('pid')} on {owner.get('host')}"


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created if missing) while the block runs."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create(path: Path) -> bool:
    """Create ``path`` holding this process's identity, atomically and only if absent:
    the content goes to a private temp file (``O_CREAT | O_EXCL``) that is then
    hard-linked to ``path`` (fails if it exists), so a claim is never seen half-written."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # only a dead process with this pid can have left it
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(_me(), fh)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def try_claim(folder: Path) -> tuple[bool, dict[str, Any] | None]:
    """Claim ``folder`` for this process: (True, None), or (False, the live owner)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM_NAME
    if _create(path):
        return True, None
    owner = read_claim(path)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == _me()["host"]:
        return False, owner  # held by this very process (another thread or a nested call)
    if not is_stale(owner):
        return False, owner
    with file_lock(folder / ".claim.lock"):  # held only while taking over
        if is_stale(read_claim(path)):  # still the same stale claim: nobody took it over
            path.unlink(missing_ok=True)
        if _create(path):
            return True, None
    return False, read_claim(path)


def release(folder: Path) -> None:
    """Remove this process's claim on ``folder`` (never another process's)."""
    path = Path(folder) / CLAIM_NAME
    owner = read_claim(path)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == _me()["host"]:
        path.unlink(missing_ok=True)


class Claims:
    """The claims one process holds; :meth:`release_all` on the way out."""

    def __init__(self) -> None:
        self.held: set[Path] = set()

    def take(self, folder: Path) -> tuple[bool, dict[str, Any] | None]:
        ok, owner = try_claim(folder)
        if ok:
            self.held.add(Path(folder))
        return ok, owner

    def release(self, folder: Path) -> None:
        release(folder)
        self.held.discard(Path(folder))

    def release_all(self) -> None:
        for folder in list(self.held):
            self.release(folder)
