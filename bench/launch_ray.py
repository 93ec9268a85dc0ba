"""Independent runs on a Ray cluster (``--launcher ray``): one task per run, with
``gpus_per_run`` GPUs (fractional: several runs share a GPU) when the cluster has GPUs and
the suite does not run on the CPU. Every task gets the suite's whole
:class:`~bench.context.ExecOptions` (speed, checkpoint cadence, tracking target, ...).
Ray is an optional extra: ``pip install -e ".[ray]"``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from bench.errors import BenchError


def import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError(
            "--launcher ray: ray is not installed (pip install 'ka-bench[ray]')"
        ) from None
    return ray


def run_on_ray(pending, options, execute, gpus_per_run: float = 1.0) -> Iterator:
    """Yield ``(run, record)`` as Ray tasks finish (see the module docstring); ``execute``
    (``bench.launch.execute_safely``, handed in so this module needs nothing above it)
    runs one run by keyword ``options``."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, include_dashboard=False)
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = gpus_per_run if has_gpus and options.device != "cpu" else 0
    task = ray.remote(num_gpus=gpus)(execute)
    worker_options = dataclasses.replace(options, progress=False)
    refs = {task.remote(r, options=worker_options): r for r in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        record: dict[str, Any] = ray.get(done[0])
        yield refs.pop(done[0]), record
