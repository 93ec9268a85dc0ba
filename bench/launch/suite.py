"""Run a whole suite: plan, skip what is finished, run the rest, write the tables."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.core.atomic import atomic_write_text
from bench.core.claims import Claims
from bench.core.claims import describe as describe_owner
from bench.core.config import SuiteConfig
from bench.core.errors import StorageError
from bench.core.progress import bar as progress_bar
from bench.core.record import RunRecord
from bench.core.specs import unique_stages
from bench.core.store import RunStore
from bench.engine.checkpoint import Checkpoint
from bench.engine.options import ExecOptions
from bench.engine.pretrain import get_backbone
from bench.engine.runtime import resolve_threads, running_at
from bench.experiment.migrate import migrate
from bench.experiment.plan import PlannedRun, dose_points, expand, plan_studies, planned_cells
from bench.launch.launchers import Slots, launch
from bench.tracking import SuiteTracker, Tracker, TrackerOpener, one_line
from bench.tune.suite_studies import protocol_notes, run_studies

log = logging.getLogger(__name__)


@dataclass
class SuiteOutcome:
    suite_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # claimed by another live process: skipped
    failed: list[str] = field(default_factory=list)
    table: str = ""  # table.md as written
    tables: list[Path] = field(default_factory=list)  # every file write_suite_tables wrote


@dataclass(frozen=True)
class Invocation:
    """How one invocation runs a suite: :func:`run_suite`'s arguments, resolved."""

    seeds: list[int] | None
    launcher: str
    workers: int
    gpus_per_run: float
    mlflow: bool  # track the suite: open_tracker, at tracking_uri
    tracking_uri: str | None
    open_tracker: TrackerOpener
    progress: bool
    on_record: Callable[[PlannedRun, dict[str, Any]], None] | None
    out: Any  # where the lines go
    study_threads: int  # torch threads of the searched rows' tuning trials


def run_suite(
    suite: SuiteConfig,
    results_root: Path,
    device: str | None = None,
    seeds: list[int] | None = None,
    launcher: str = "serial",
    workers: int = 2,
    progress: bool = True,
    on_record: Callable[[PlannedRun, RunRecord], None] | None = None,
    out=None,
    mlflow: bool = True,
    tracking_uri: str | None = None,
    gpus_per_run: float | None = None,
    threads: int | None = None,
    tracker: TrackerOpener | None = None,
) -> SuiteOutcome:
    """Run every pending run of ``suite`` under ``results_root/<suite name>/``.

    ``threads`` (``--threads``, else the suite's ``threads:``, else this process's torch
    threads shared among the runs that go at once: :func:`bench.engine.runtime.resolve_threads`):
    the torch threads every run executes at, whatever the launcher; this process works at
    that count too (pretrain stages, teachers, serial runs) and gets its own back after.

    ``mlflow``: track the suite in MLflow (:mod:`bench.tracking`; ``tracking_uri``, else
    ``MLFLOW_TRACKING_URI``, else ``<results>/mlflow.db``). Resume: a run key is skipped
    when its ``result.json`` is finished (or was restored from a FINISHED MLflow run);
    anything else runs again, from its checkpoint when ``suite.checkpoint_every`` left one.
    ``tracker``: what tracks the suite when ``mlflow`` is on (:class:`bench.tracking.Tracker`;
    default: :func:`mlflow_tracker`).
    ``launcher`` / ``workers`` / ``gpus_per_run`` (default: the suite's): :mod:`bench.launch.launchers`."""
    asked = threads
    threads = resolve_threads(asked, suite.threads, 1 if launcher == "serial" else workers)
    how = Invocation(
        seeds=seeds,
        launcher=launcher,
        workers=workers,
        gpus_per_run=suite.gpus_per_run if gpus_per_run is None else gpus_per_run,
        mlflow=mlflow,
        tracking_uri=tracking_uri,
        open_tracker=tracker or mlflow_tracker,
        progress=progress,
        on_record=on_record,
        out=out if out is not None else sys.stdout,  # looked up now: pytest swaps it
        # searched rows tune first (bench.tune.suite_studies), in their own workers: the same rule
        study_threads=resolve_threads(
            asked, suite.threads, workers if launcher == "process" else 1
        ),
    )
    options = suite_options(suite, Path(results_root).resolve(), device, progress, threads)
    with running_at(threads):
        return _run_suite(suite, options, how)


def suite_options(
    suite: SuiteConfig, results_root: Path, device: str | None, progress: bool, threads: int
) -> ExecOptions:
    """How the suite's runs execute (its recipe's speed, checkpoints and test curve)."""
    return ExecOptions(
        results_root=results_root,
        device=device or suite.device,  # resolved where a run executes (a Ray task's GPU)
        num_workers=suite.num_workers,
        progress=progress,
        checkpoint_every=suite.checkpoint_every,
        speed=suite.speed,
        test_curve=suite.record_test_curve,
        threads=threads,
    )


def _run_suite(suite: SuiteConfig, options: ExecOptions, how: Invocation) -> SuiteOutcome:
    """Plan, then run what is pending with the suite's tracker (MLflow run) open around it."""
    store = RunStore(options.results_root / suite.name)
    runs = plan_runs(suite, store, options, how)
    outcome = SuiteOutcome(store.suite_dir)
    claims = Claims()
    tracker = None
    if how.mlflow:
        tracker = open_tracker(suite, runs, options, how)
    try:
        if tracker is not None:
            tracker.reconcile(runs, store, how.out)
            options = dataclasses.replace(options, tracking=tracker.target)
        execute_pending(suite, runs, Recorder(store, claims, outcome, tracker, how), options)
    except BaseException as exc:
        if tracker is not None:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            tracker.close(status, error=one_line(exc))
        raise
    finally:
        claims.release_all()
    if tracker is not None:
        close_tracker(tracker, runs, outcome, store)
    return outcome


def plan_runs(
    suite: SuiteConfig, store: RunStore, options: ExecOptions, how: Invocation
) -> list[PlannedRun]:
    """The suite's runs: results under legacy keys moved, searched rows tuned first (val
    only) and planned at their best points, pretrain stages trained once each (a bad
    source fails here, before anything is written)."""
    results_root = options.results_root
    runs = expand(suite, how.seeds)
    here = options.resolved()  # fails early on cuda-without-GPU
    moved = migrate(runs, results_root)  # results filed under keys with data locations
    if moved:
        print(moved, file=how.out)
    if suite.protocol is not None:
        tuned = run_studies(
            suite,
            results_root,
            device=options.device,
            workers=how.workers if how.launcher == "process" else 1,
            mlflow=how.mlflow,
            tracking_uri=how.tracking_uri,
            progress=how.progress,
            out=how.out,
            threads=how.study_threads,
        )
        runs = expand(suite, how.seeds, tuned=tuned)
    for stage in unique_stages(r.spec.pretrain for r in runs if not store.is_finished(r.key)):
        get_backbone(stage, here)
    return runs


def execute_pending(
    suite: SuiteConfig, runs: list[PlannedRun], record: Recorder, options: ExecOptions
) -> None:
    """Skip the finished runs, claim and launch the rest, record each, write the tables."""
    store, outcome, how = record.store, record.outcome, record.how
    pending = skip_finished(runs, store, outcome, how.out)
    atomic_write_text(
        store.suite_dir / "suite.yaml",
        yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False),
    )
    # serial: claim each run just before it starts; pools: claim all before fanning out
    todo = claimed(pending, store, record.claims, outcome, how.out)
    todo = todo if how.launcher == "serial" else list(todo)
    desc = f"suite {suite.name}"
    bar = progress_bar(total=len(pending), desc=desc, unit="run", show=how.progress)
    for run, rec in launch(how.launcher, todo, options, Slots(how.workers, how.gpus_per_run)):
        record(run, rec)
        bar.update(1)
    bar.close()
    notes = protocol_notes(plan_studies(suite), options.results_root) if suite.protocol else []
    write_tables(store, runs, outcome, suite.reference, notes)


def open_tracker(suite: SuiteConfig, runs, options: ExecOptions, how: Invocation) -> Tracker:
    """The suite's tracker (``how.open_tracker``), with the invocation's params."""
    return how.open_tracker(
        suite.name,
        options.results_root,
        how.tracking_uri,
        {
            "seeds": sorted({r.meta.seed for r in runs}),
            "device": options.device,
            "launcher": how.launcher,
            "checkpoint_every": suite.checkpoint_every,
            "runs": len(runs),
            "results": str(options.results_root),
        },
    )


def mlflow_tracker(
    suite_name: str, results_root: Path, tracking_uri: str | None, params: dict[str, Any]
) -> Tracker:
    """The default suite tracker, chosen here only: the suite's MLflow experiment and the
    invocation's parent run (:class:`bench.tracking.SuiteTracker`), drawing the figures of
    the runs it logs from their records."""
    from bench.report.plots import run_figures  # matplotlib: only when runs are tracked

    return SuiteTracker.open(
        suite_name, results_root, tracking_uri, params=params, figures=run_figures
    )


def skip_finished(runs: list[PlannedRun], store: RunStore, outcome: SuiteOutcome, out) -> list:
    """The runs still to do; finished ones are counted as skipped (their stale checkpoint,
    if any, removed)."""
    pending = []
    for run in runs:
        if store.is_finished(run.key):
            outcome.skipped.append(run.key)
            Checkpoint.of_run(store.run_dir(run.key)).remove()
        else:
            pending.append(run)
    if outcome.skipped:
        print(f"skipping {len(outcome.skipped)} finished run(s) (result.json found)", file=out)
    return pending


def claimed(runs, store: RunStore, claims: Claims, outcome: SuiteOutcome, out) -> Iterator:
    """Runs this process may execute: claimed now, and not finished meanwhile."""
    for run in runs:
        ok, owner = claims.take(store.run_dir(run.key))
        if not ok:
            outcome.held.append(run.key)
            print(
                f"skipping {run.meta.row} / {run.meta.column} / seed {run.meta.seed}: "
                f"run {run.key} is being executed by {describe_owner(owner)}",
                file=out,
            )
        elif store.is_finished(run.key):  # another process finished it meanwhile
            claims.release(store.run_dir(run.key))
            outcome.skipped.append(run.key)
        else:
            yield run


@dataclass
class Recorder:
    """What happens to each record a launcher yields: written to the store (atomic), the
    run's claim released, handed to the tracker (MLflow), counted, and one line printed."""

    store: RunStore
    claims: Claims
    outcome: SuiteOutcome
    tracker: Tracker | None
    how: Invocation

    def __call__(self, run: PlannedRun, rec: RunRecord) -> None:
        store, meta = self.store, run.meta
        try:
            store.write(rec)
        except OSError as exc:  # full disk, read-only results: stop, keep the rest
            raise StorageError(
                f"cannot write the result of run {run.key} ({meta.row} / {meta.column} / "
                f"seed {meta.seed}) to {store.result_path(run.key)}: {exc.strerror or exc}; "
                "earlier results are intact, re-run to resume"
            ) from None
        finally:
            self.claims.release(store.run_dir(run.key))
        if self.tracker is not None:
            self.tracker.record_done(run, rec)
        if self.how.on_record:
            self.how.on_record(run, rec)
        if not rec.finished:
            self.outcome.failed.append(run.key)
            print(f"FAILED {meta.row} / {meta.column} / seed {meta.seed}: {rec.error}", file=self.how.out)  # fmt: skip
            return
        Checkpoint.of_run(store.run_dir(run.key)).remove()
        self.outcome.ran.append(run.key)
        if not self.how.progress:  # no bars: one line per finished run instead
            m = rec.metrics  # a tuning run has no test_acc: its val_acc then
            acc = m.test_acc if "test_acc" in m.model_fields_set else m.val_acc
            print(
                f"done {meta.row} / {meta.column} / seed {meta.seed}"
                + (f": test_acc {acc:.4f}" if isinstance(acc, float) else "")
                + f" ({rec.timings.get('total', 0.0):.1f}s)",
                file=self.how.out,
                flush=True,
            )


def write_tables(
    store: RunStore,
    runs: list[PlannedRun],
    outcome: SuiteOutcome,
    reference: str,
    notes: list[str] = (),
) -> None:
    """The suite's tables and plots (:mod:`bench.report`), from the records this plan
    keeps (superseded ones left out), once anything is finished; with ``sweep:`` rows,
    the dose-response plots against the ``reference`` row too."""
    from bench.report import drop_superseded, read_records, results_frame, write_suite_tables
    from bench.report.dose import write_dose_plots

    if not any(store.is_finished(r.key) for r in runs):
        return
    cells = planned_cells(runs)
    written = write_suite_tables(store.suite_dir, cells, extra_notes=list(notes))
    if isinstance(written, dict):
        outcome.tables = [Path(p) for p in written.values()]
    doses = dose_points(runs)
    if doses:
        df = results_frame(drop_superseded(read_records(store.suite_dir), cells))
        outcome.tables += write_dose_plots(df, doses, reference, store.suite_dir)
    table_md = store.suite_dir / "table.md"
    outcome.table = table_md.read_text() if table_md.is_file() else str(written or "")


def close_tracker(tracker: Tracker, runs, outcome: SuiteOutcome, store: RunStore) -> None:
    """End the parent run: FINISHED, or FAILED when any run failed, with the counts and
    the suite's files as artifacts."""
    n_failed = len(outcome.failed)
    tracker.close(
        "FAILED" if n_failed else "FINISHED",
        counts={
            "total": len(runs),
            "ran": len(outcome.ran),
            "skipped": len(outcome.skipped),
            "failed": n_failed,
        },
        artifacts=[store.suite_dir / "suite.yaml", *outcome.tables],
        base=store.suite_dir,
        error=f"{n_failed} of {len(runs)} run(s) failed" if n_failed else None,
    )
