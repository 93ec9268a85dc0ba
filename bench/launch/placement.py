"""Which GPU each worker process of ``--launcher process`` gets.

Torch-free at import on purpose: :func:`init_worker` runs first in a freshly spawned
worker and must set ``CUDA_VISIBLE_DEVICES`` before anything there imports torch and
starts CUDA (which reads the variable once)."""

from __future__ import annotations

import os

CUDA_ENV = "CUDA_VISIBLE_DEVICES"


def visible_gpus(device: str) -> list[str]:
    """The GPU ids this process may hand to workers (``[]`` when runs go to the CPU):
    the entries of ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs, as many as CUDA
    counts), else ``0 .. device_count - 1``."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get(CUDA_ENV)
    if listed is not None:
        return [s.strip() for s in listed.split(",") if s.strip()][:count]
    return [str(i) for i in range(count)]


def gpu_for_worker(index: int, gpus: list[str]) -> str | None:
    """Round-robin: worker ``index`` gets ``gpus[index % len(gpus)]`` (None: no GPU)."""
    return gpus[index % len(gpus)] if gpus else None


def init_worker(counter, gpus: list[str], threads: int) -> None:
    """ProcessPoolExecutor initializer: number this worker (``counter``: a shared
    ``multiprocessing.Value``), pin it to its GPU, then give it its share of the CPU
    threads."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    gpu = gpu_for_worker(index, gpus)
    if gpu is not None:
        os.environ[CUDA_ENV] = gpu
    import torch  # only now: CUDA, when it starts, sees this worker's GPU

    torch.set_num_threads(threads)


def placement() -> dict:
    """Where this process runs: host, pid, torch threads and the GPUs it may see; in a
    Ray task also the Ray node's id and address."""
    import socket

    import torch

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "cuda_visible_devices": os.environ.get(CUDA_ENV),
        **ray_node(),
    }


def ray_node() -> dict:
    """``ray_node_id`` and ``ray_node_ip`` when this process runs a Ray task, else ``{}``
    (the driver, a process worker, or no Ray imported)."""
    import sys

    ray = sys.modules.get("ray")  # imported already wherever a Ray task runs
    try:
        if ray is None or not ray.is_initialized():
            return {}
        ctx = ray.get_runtime_context()
        if ctx.get_task_id() is None:  # the driver
            return {}
        return {"ray_node_id": ctx.get_node_id(), "ray_node_ip": ray.util.get_node_ip_address()}
    except AttributeError:  # a stand-in module (tests) or another Ray API
        return {}
