"""One switch for every progress bar (suite, training, dataset decode).

Bars are drawn only on a terminal: ``bench ... --no-progress`` turns them off, and so does
a stderr that is a file or a pipe (a log then gets one line per finished run instead of
carriage-return frames). Worker processes inherit the switch through ``KA_BENCH_PROGRESS``.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

ENV = "KA_BENCH_PROGRESS"


def set_enabled(on: bool) -> None:
    """Turn every bar of this process (and of the workers it starts) on or off."""
    if on:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = "0"


def enabled() -> bool:
    """Bars wanted (no ``--no-progress``) and stderr is a terminal."""
    if os.environ.get(ENV) == "0":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(iterable=None, *, show: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless ``show`` and :func:`enabled`."""
    return tqdm(iterable, disable=not (show and enabled()), **kwargs)
