"""Seeds and devices: what makes a run repeatable and where it runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from bench.errors import BenchError


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
