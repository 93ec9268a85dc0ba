"""Independent runs on a Ray cluster (``--launcher ray``): one task per run, with
``gpus_per_run`` GPUs (fractional: several runs share a GPU) when the cluster has GPUs and
the suite does not run on the CPU, and ``options.threads`` CPUs (so that Ray never runs
more threads on a node than it has cores). Every task gets the suite's whole
:class:`~bench.engine.options.ExecOptions` (speed, checkpoint cadence, tracking target,
threads, ...). Ray is an optional extra: ``pip install -e ".[ray]"``.

Without ``RAY_ADDRESS`` the harness starts its own single-node cluster (:func:`start_ray`)
bound to the loopback interface only and without the dashboard web UI; with it, it joins
that cluster as it is (its addresses are its operator's choice)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from bench.core.errors import BenchError
from bench.core.record import RunRecord

# Ray's own switch for single-node clusters (what it does on macOS and Windows): with it
# at 0 the node's address is 127.0.0.1, so every gRPC, agent and metrics server binds
# to the loopback interface instead of 0.0.0.0 / the node's external address.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


def import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError(
            "--launcher ray: ray is not installed (pip install 'ka-bench[ray]')"
        ) from None
    return ray


def start_ray(num_cpus: int | None = None):
    """Ray, initialised: connected to ``$RAY_ADDRESS`` when set, else a new local cluster
    of ``num_cpus`` CPUs (default: Ray's count) listening on 127.0.0.1 only, with no
    dashboard web UI. Ray 2.x still starts its head API process (``dashboard.py``, no UI
    modules) and the autoscaler monitor; both listen only for their Prometheus metrics,
    on 127.0.0.1 too. Returns the ``ray`` module; a no-op when Ray is initialised."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", include_dashboard=False)
        return ray
    saved = os.environ.get(LOOPBACK_ENV)
    constants = _ray_constants()
    saved_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[LOOPBACK_ENV] = "0"  # read by every Ray process this starts
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # this process imported ray already
    try:
        ray.init(
            address="local",  # our own cluster, never one left running by `ray start`
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address=LOOPBACK,
        )
    finally:
        if saved is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = saved_flag
    return ray


def _ray_constants():
    try:
        import ray._private.ray_constants as constants
    except ImportError:  # a Ray without it: the environment variable alone
        return None
    return constants


def run_on_ray(pending, options, execute, gpus_per_run: float = 1.0) -> Iterator:
    """Yield ``(run, record)`` as Ray tasks finish (see the module docstring); ``execute``
    (``bench.launch.local.execute_safely``, handed in so this module needs nothing above it)
    runs one run by keyword ``options``."""
    from bench.engine.runtime import available_cores

    ray = start_ray(num_cpus=available_cores())
    threads = options.threads or 1
    largest = max(
        (n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive", True)), default=0
    )
    if largest < threads:
        raise BenchError(
            f"--launcher ray: a run takes {threads} CPU(s) (threads) but the largest "
            f"Ray node has {largest:g}; give --threads {max(1, int(largest))} or fewer"
        )
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = gpus_per_run if has_gpus and options.device != "cpu" else 0
    task = ray.remote(num_gpus=gpus, num_cpus=threads)(execute)
    worker_options = dataclasses.replace(options, progress=False)
    refs = {task.remote(r, options=worker_options): r for r in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        record: RunRecord = ray.get(done[0])
        yield refs.pop(done[0]), record
