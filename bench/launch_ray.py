"""Independent runs on a Ray cluster (``--launcher ray``): one task per run, one GPU per
task when the cluster has GPUs. Ray is an optional extra: ``pip install -e ".[ray]"``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import BenchError


def run_on_ray(pending, results_root: Path, device_name: str, num_workers: int) -> Iterable:
    try:
        import ray
    except ImportError:
        raise BenchError(
            "--launcher ray: ray is not installed (pip install 'ka-bench[ray]')"
        ) from None
    from bench.suite import _execute_safely

    if not ray.is_initialized():
        ray.init(address="auto" if _has_cluster() else None, include_dashboard=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and device_name != "cpu" else 0
    task = ray.remote(num_gpus=gpus)(_execute_safely)
    refs = {task.remote(r, results_root, device_name, num_workers, False): r for r in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        record: dict[str, Any] = ray.get(done[0])
        yield refs.pop(done[0]), record


def _has_cluster() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))
