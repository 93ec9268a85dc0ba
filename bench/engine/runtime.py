"""Seeds and devices: what makes a run repeatable and where it runs."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from bench.core.errors import BenchError


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("device: 'cuda' was asked for but no CUDA device is available")
    if name not in {"cpu", "cuda"}:
        raise BenchError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def configure_threads() -> None:
    """Use the cores the process may run on (cgroup/affinity aware) unless the user set
    ``OMP_NUM_THREADS``."""
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


# ------------------------------------------------------------------ threads per run
#
# One rule for every launcher: a run executes at ``threads`` torch threads, set in the
# process that executes it (bench.experiment.runner.execute), so that serial, process and Ray runs of
# one suite at the same thread count give the same numbers bit for bit on the CPU.
#   threads = --threads, else the suite's ``threads:``, else
#             max(1, T // runs at once)  (1 serial; --workers for process, ray and tune)
# where T is this process's torch thread count once configure_threads() ran: the cores
# it may use, or OMP_NUM_THREADS when set. Serial therefore keeps the thread count it
# always had, and parallel runs share the cores instead of oversubscribing them.


def available_cores() -> int:
    """The cores this process may run on (CPU affinity / cgroup cpuset aware)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(runs_at_once: int = 1) -> int:
    """Threads per run when nobody asked: this process's share of its torch threads."""
    return max(1, torch.get_num_threads() // max(1, runs_at_once))


def check_threads(threads: int, key: str) -> int:
    """``threads`` when it is between 1 and the cores this process may use; else a
    :class:`BenchError` naming ``key`` (``threads`` or ``--threads``)."""
    cores = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cores:
        raise BenchError(
            f"{key}: must be between 1 and {cores} (the cores this process may use), "
            f"got {threads!r}"
        )
    return threads


def resolve_threads(cli: int | None, suite: int | None, runs_at_once: int = 1) -> int:
    """Threads per run: ``cli`` (``--threads``), else ``suite`` (``threads:``), else
    :func:`default_threads`; an explicit count is checked by :func:`check_threads`."""
    if cli is not None:
        return check_threads(cli, "--threads")
    if suite is not None:
        return check_threads(suite, "threads")
    return default_threads(runs_at_once)


def apply_threads(threads: int | None) -> None:
    """Run torch at ``threads`` intra-op threads here (None: leave it). Inter-op threads
    too, where torch still allows it (once per process, before any parallel work); they
    change no number, only the intra-op count does."""
    if not threads:
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        # already set, or parallel work started: torch refuses; the intra-op count rules
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)


@contextmanager
def running_at(threads: int | None) -> Iterator[None]:
    """This process at ``threads`` torch threads (:func:`apply_threads`) while the block
    runs; its intra-op count is put back after."""
    before = torch.get_num_threads()
    apply_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
