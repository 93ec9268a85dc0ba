"""Where decoded images and unpacked archives are cached on this machine."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KA_BENCH_CACHE"


def cache_dir(kind: str) -> Path:
    """``$KA_BENCH_CACHE/<kind>``, or ``~/.cache/ka-bench/<kind>``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ka-bench"
    return Path(base).expanduser() / kind
