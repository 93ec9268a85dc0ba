"""How a suite's runs get executed: one frozen :class:`ExecOptions` (what every run needs,
passed by name) and launchers in one registry, each ``launcher(runs, options, slots)``.

Registered with :func:`bench.launch.launchers.launcher` (the registry, with :class:`Slots`
and :func:`launch`, re-exported here); another launcher is its own module beside this one.

* ``serial``: one run after another in this process.
* ``process``: ``slots.workers`` spawned processes run at once. On CUDA every worker
  process owns one of the visible GPUs (``CUDA_VISIBLE_DEVICES`` set before CUDA starts in
  it, round-robin: :mod:`bench.launch.placement`), so with more workers than GPUs, runs are
  packed several per GPU; with one GPU all workers share it.
* ``ray``: one Ray task per run, ``slots.gpus_per_run`` GPUs each (fractional: packed).

Every run executes at ``options.threads`` torch threads, set in the process that executes
it (:func:`bench.experiment.runner.execute`); ``bench.launch.suite.run_suite`` resolves the count
(:func:`bench.engine.runtime.resolve_threads`), a launcher called directly without one uses
:func:`bench.engine.runtime.default_threads` of its runs at once.

The parallel launchers first train every teacher the runs need, once, here, so that no
two workers ever train the same teacher at the same time.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from bench.core.record import RunRecord
from bench.core.specs import PlannedRun
from bench.core.store import RunStore
from bench.engine.checkpoint import Checkpoint
from bench.engine.options import ExecOptions
from bench.engine.runtime import default_threads
from bench.engine.teachers import warm_teachers
from bench.experiment.runner import execute, failure_record
from bench.launch.launchers import LAUNCHERS, Launcher, Slots, launch, launcher
from bench.launch.placement import init_worker, placement, visible_gpus
from bench.launch.ray_cluster import run_on_ray
from bench.tracking import RunTracker

__all__ = ["LAUNCHERS", "Launcher", "Record", "Slots", "execute_safely", "launch", "launcher"]

log = logging.getLogger(__name__)


Record = RunRecord  # what a launcher yields beside its run


# ------------------------------------------------------------------ one run


def execute_safely(run: PlannedRun, options: ExecOptions) -> Record:
    """Execute one run in this process and return its record; a failure is recorded,
    never raised. With ``options.tracking`` its MLflow child run is logged live from
    here; the run resumes from (and, every ``checkpoint_every`` epochs, saves) its
    checkpoint."""
    tracker = None
    try:
        options = options.resolved()
        if options.tracking is not None:
            tracker = RunTracker.start(options.tracking, run, str(options.device))
        run_dir = RunStore(Path(options.results_root) / run.meta.suite).run_dir(run.key)
        rec = execute(
            run,
            options,
            callbacks=[tracker.on_epoch] if tracker else [],
            checkpoint=Checkpoint.of_run(run_dir, options.checkpoint_every, run.key),
        )
    except Exception as exc:  # recorded as failed; the suite goes on
        rec = failure_record(run, exc)
    except BaseException as exc:  # Ctrl-C, exit: the run stays to do
        if tracker is not None:
            tracker.kill(f"interrupted: {type(exc).__name__}")
        raise
    rec.placement = placement()
    if tracker is not None:
        from bench.report.plots import run_figures  # matplotlib: only where a run is tracked

        tracker.finish(rec, run_figures(rec))
    return rec


# ------------------------------------------------------------------ launchers


@launcher("serial")
def run_serial(runs, options: ExecOptions, slots: Slots):
    for run in runs:
        yield run, execute_safely(run, options)


@launcher("process")
def run_processes(runs, options: ExecOptions, slots: Slots):
    import concurrent.futures as cf
    import multiprocessing as mp

    if slots.workers < 1:
        raise ValueError(f"--workers: must be at least 1, got {slots.workers}")
    warm_teachers(runs, options)
    ctx = mp.get_context("spawn")  # no forked CUDA or torch thread state
    gpus = visible_gpus(options.device)
    threads = options.threads or default_threads(slots.workers)
    if gpus:
        log.info("%d worker(s) over GPU(s) %s", slots.workers, ",".join(gpus))
    worker_options = dataclasses.replace(options, progress=False, threads=threads)
    with cf.ProcessPoolExecutor(
        slots.workers,
        ctx,
        initializer=init_worker,
        initargs=(ctx.Value("i", 0), gpus, threads),
    ) as pool:
        futures = {pool.submit(execute_safely, r, worker_options): r for r in runs}
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result()


@launcher("ray")
def run_ray(runs, options: ExecOptions, slots: Slots):
    warm_teachers(runs, options)
    threads = options.threads or default_threads(slots.workers)
    options = dataclasses.replace(options, threads=threads)
    yield from run_on_ray(runs, options, execute_safely, slots.gpus_per_run)
