"""Run a whole suite: plan, skip what is finished, run the rest, write the tables."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from bench.config import SuiteConfig
from bench.data import prepare
from bench.plan import PlannedRun, expand
from bench.runner import execute, failure_record
from bench.runtime import resolve_device
from bench.store import RunStore, atomic_write_text
from bench.teachers import get_teacher

log = logging.getLogger(__name__)


@dataclass
class SuiteOutcome:
    suite_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    table: str = ""


def describe_plan(runs: list[PlannedRun], store: RunStore, results_root: Path) -> str:
    """The dry-run listing: every run (key, row, column, seed, state) and its teachers."""
    lines = [f"{'run key':16}  {'state':6}  {'column':14}  {'seed':>4}  row"]
    teachers: dict[str, str] = {}
    for run in runs:
        record = store.read(run.key)
        state = record["status"] if record else "to do"
        state = "done" if state == "finished" else state
        lines.append(
            f"{run.key:16}  {state:6}  {run.meta.column:14}  {run.meta.seed:>4}  {run.meta.row}"
        )
        ds = run.spec.dataset_config()
        if ds.tasks != "natural":
            for t in run.spec.teacher_specs(2 if ds.tasks == "halves" else len(ds.tasks)):
                cached = (results_root / "teachers" / t.key / "meta.json").is_file()
                teachers[t.key] = (
                    f"{t.key}  {'cached' if cached else 'to train':8}  {ds.column} "
                    f"T{t.task + 1} {t.arch}"
                )
    done = sum(1 for r in runs if store.is_finished(r.key))
    lines.append(f"{len(runs)} runs: {done} done, {len(runs) - done} to do")
    lines.append(f"teachers needed ({len(teachers)}):")
    lines += [f"  {v}" for v in teachers.values()]
    return "\n".join(lines)


def _warm_teachers(runs: list[PlannedRun], results_root: Path, device, workers, progress):
    """Train every teacher the pending runs need, once, before runs fan out in parallel."""
    seen: set[str] = set()
    for run in runs:
        ds = run.spec.dataset_config()
        data = prepare(ds)
        for tspec in run.spec.teacher_specs(len(data.layout.tasks)):
            if tspec.key not in seen:
                seen.add(tspec.key)
                get_teacher(tspec, data, results_root / "teachers", device, workers, progress)


def _execute_safely(run, results_root, device_name, workers, progress) -> dict[str, Any]:
    try:
        return execute(run, results_root, resolve_device(device_name), workers, progress=progress)
    except Exception as exc:  # recorded as failed; the suite goes on
        return failure_record(run, exc)


def run_suite(
    suite: SuiteConfig,
    results_root: Path,
    device: str | None = None,
    seeds: list[int] | None = None,
    launcher: str = "serial",
    workers: int = 2,
    progress: bool = True,
    on_record: Callable[[PlannedRun, dict[str, Any]], None] | None = None,
    out=sys.stdout,
) -> SuiteOutcome:
    """Run every pending run of ``suite`` under ``results_root/<suite name>/``."""
    results_root = Path(results_root).resolve()
    runs = expand(suite, seeds)
    store = RunStore(results_root / suite.name)
    device_name = device or suite.device
    resolve_device(device_name)  # fail early on cuda-without-GPU
    outcome = SuiteOutcome(store.suite_dir)
    pending = []
    for run in runs:
        (outcome.skipped if store.is_finished(run.key) else pending).append(run)
    if outcome.skipped:
        print(f"skipping {len(outcome.skipped)} finished run(s) (result.json found)", file=out)
    atomic_write_text(
        store.suite_dir / "suite.yaml",
        yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False),
    )

    def record(run: PlannedRun, rec: dict[str, Any]) -> None:
        store.write(rec)
        if on_record:
            on_record(run, rec)
        if rec["status"] == "finished":
            outcome.ran.append(run.key)
        else:
            outcome.failed.append(run.key)
            print(
                f"FAILED {run.meta.row} / {run.meta.column} / seed {run.meta.seed}: {rec['error']}",
                file=out,
            )

    bar = tqdm(total=len(pending), desc=f"suite {suite.name}", unit="run", disable=not progress)
    for run, rec in _launch(pending, results_root, device_name, launcher, workers, progress, suite):
        record(run, rec)
        bar.update(1)
    bar.close()

    from bench.report import write_suite_tables

    if any(store.is_finished(r.key) for r in runs):
        outcome.table = write_suite_tables(store.suite_dir)
    return outcome


def _launch(
    pending: list[PlannedRun],
    results_root: Path,
    device_name: str,
    launcher: str,
    workers: int,
    progress: bool,
    suite: SuiteConfig,
) -> Iterable[tuple[PlannedRun, dict[str, Any]]]:
    """Yield (run, record) as runs complete: in this process, a process pool, or Ray."""
    if not pending:
        return
    if launcher == "serial":
        for run in pending:
            yield run, _execute_safely(run, results_root, device_name, suite.num_workers, progress)
        return
    device = resolve_device(device_name)
    _warm_teachers(pending, results_root, device, suite.num_workers, progress)
    if launcher == "process":
        import concurrent.futures as cf
        import multiprocessing as mp

        threads = max(1, torch.get_num_threads() // workers)
        with cf.ProcessPoolExecutor(
            workers, mp.get_context("spawn"), initializer=torch.set_num_threads, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(
                    _execute_safely, r, results_root, device_name, suite.num_workers, False
                ): r
                for r in pending
            }
            for fut in cf.as_completed(futures):
                yield futures[fut], fut.result()
        return
    if launcher == "ray":
        from bench.launch_ray import run_on_ray

        yield from run_on_ray(pending, results_root, device_name, suite.num_workers)
        return
    raise ValueError(f"launcher {launcher!r} is not one of serial, process, ray")
