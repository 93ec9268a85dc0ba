"""``python -m bench tune``: Optuna search of a method's params on the validation split.

Every trial is the base run of the tune file with the sampled params, executed by the
same runner as a suite run, but with ``with_test=False``: the test split is never loaded,
evaluated or selected on (methods.md "Setting"). The objective is the accuracy on the
labelled validation split carved from the training images (last or best epoch, mean over
seeds); it is reported per epoch so that the pruner can stop hopeless trials early.

Storage: an Optuna RDB study, by default ``sqlite:///<results>/tune/<study>/optuna.db``;
``--storage`` takes any database URL so that workers on several machines join one study.
``--workers N`` creates the study first (no racing schema creation), then N processes
each run ``study.optimize`` for their share of the remaining trials. Re-running resumes:
finished (complete + pruned) trials count toward ``budget.n_trials``.

Outputs in ``<results>/tune/<study>/``: ``best.yaml`` (a suite entry takes it with
``params_from:``), ``trials.csv``, ``top.md``, PNG plots and ``tune.yaml`` (the resolved
config). MLflow: one parent run per study, one child run per trial.

This module runs a study end to end; its parts change for their own reasons: the Optuna
study (:mod:`.study`), the trials and their worker pool (:mod:`.trials`), the output files
(:mod:`.outputs`) and the MLflow runs (:mod:`.tracker`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import yaml

from bench.core.atomic import atomic_write_text
from bench.engine.options import ExecOptions
from bench.engine.teachers import warm_teachers
from bench.experiment.search import TuneConfig
from bench.tune.job import TuneJob, first_point, trial_runs
from bench.tune.outputs import write_outputs
from bench.tune.study import (
    count_finished,
    default_storage,
    fail_orphans,
    open_study,
    storage_of,
    trial_counts,
)
from bench.tune.tracker import end_parent, finish_parent, start_parent
from bench.tune.trials import run_trials


@dataclass
class TuneOutcome:
    study: optuna.Study
    out_dir: Path
    ran: int
    best: dict[str, Any] | None
    counts: dict[str, int]


def tune(
    cfg: TuneConfig,
    results_root: Path,
    study_name: str | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    device: str | None = None,
    workers: int = 1,
    mlflow: bool = True,
    tracking_uri: str | None = None,
    progress: bool = True,
    labels: dict[str, str] | None = None,
    threads: int | None = None,
) -> TuneOutcome:
    """Run (or resume) the study of ``cfg``; write its outputs; return a summary.
    ``timeout`` (or ``budget.timeout``) counts from now: no trial starts after it.
    ``threads`` (``--threads``; default: this process's torch threads shared among the
    workers): the torch threads of every trial's runs, in whichever worker
    (:func:`bench.engine.runtime.resolve_threads`)."""
    start = time.time()
    results_root = Path(results_root).resolve()
    cfg = _with_budget(cfg, n_trials, timeout)
    study_name = study_name or cfg.name
    device = device or cfg.device
    ExecOptions(results_root, device).resolved()  # fail early on cuda-without-GPU
    job = TuneJob(
        cfg=cfg,
        study=study_name,
        storage=storage or default_storage(results_root, study_name),
        results_root=results_root,
        device=device,
        tracking_uri=_tracking_uri(results_root, mlflow, tracking_uri),
        progress=progress,
        deadline=start + cfg.budget.timeout if cfg.budget.timeout else None,
        labels=tuple(sorted((labels or {}).items())),
    )
    study = open_study(job, create=True)  # checks the study's identity first
    fail_orphans(study)
    atomic_write_text(job.out_dir / "tune.yaml", yaml.safe_dump(cfg.model_dump(mode="json")))
    if job.tracking_uri:
        job = start_parent(job, study)
    remaining = max(0, cfg.budget.n_trials - count_finished(study))
    ran = _run_remaining(job, remaining, workers, threads) if remaining else 0
    return _conclude(job, ran)


def _with_budget(cfg: TuneConfig, n_trials: int | None, timeout: float | None) -> TuneConfig:
    """``cfg`` with its budget's trials and timeout replaced by the ones given."""
    given = {"n_trials": n_trials, "timeout": timeout}
    budget = cfg.budget.model_copy(update={k: v for k, v in given.items() if v})
    return cfg.model_copy(update={"budget": budget})


def _tracking_uri(results_root: Path, mlflow: bool, uri: str | None) -> str | None:
    """The MLflow store the study logs to; None without MLflow."""
    if not mlflow:
        return None
    from bench.tracking import resolve_tracking_uri

    return resolve_tracking_uri(results_root, uri)


def _run_remaining(job: TuneJob, remaining: int, workers: int, threads: int | None) -> int:
    """Warm the teachers, then run the ``remaining`` trials over at most ``workers``
    workers; an error or Ctrl-C ends the study's MLflow run before it propagates."""
    from bench.engine.runtime import resolve_threads, running_at

    try:
        workers = max(1, min(workers, remaining))
        job = replace(job, threads=resolve_threads(threads, None, workers))
        with running_at(job.threads):  # the teachers too; this process's count after
            # teachers once, before workers fan out; test-free (job.options.with_test off)
            warm_teachers(trial_runs(job.cfg, first_point(job.cfg))[:1], job.options)
            return run_trials(job, workers, remaining)
    except BaseException as exc:
        if job.tracking_uri:
            stopped = isinstance(exc, KeyboardInterrupt)
            end_parent(job, "KILLED" if stopped else "FAILED", f"{type(exc).__name__}: {exc}")
        raise


def _conclude(job: TuneJob, ran: int) -> TuneOutcome:
    """Write the study's outputs, end its MLflow run and summarise it."""
    study = open_study(job)
    best = write_outputs(job, study)
    if job.tracking_uri:
        finish_parent(job, study, best)
    return TuneOutcome(study, job.out_dir, ran, best, trial_counts(study))


def describe(cfg: TuneConfig, results_root: Path, study: str | None, storage: str | None) -> str:
    """The ``--dry-run`` summary: the base run, the space, the budget, the study so far."""
    study = study or cfg.name
    out = Path(results_root).resolve() / "tune" / study
    url = storage or f"sqlite:///{out / 'optuna.db'}"
    done = "new study"
    if storage is not None or (out / "optuna.db").is_file():
        try:
            s = optuna.load_study(study_name=study, storage=storage_of(url))
            done = f"{count_finished(s)} finished trial(s) so far"
        except Exception:  # not created yet (or unreachable: the real run will say)
            pass
    runs = trial_runs(cfg, first_point(cfg))
    spec = runs[0].spec

    def space(s) -> str:
        if s.choices is not None:
            return f"one of {s.choices}"
        return f"{s.type} in [{s.low:g}, {s.high:g}]" + (" (log)" if s.log else "")

    lines = [
        f"study {study}: {done}; outputs in {out}",
        f"storage: {url if storage is None else '(given by --storage)'}",
        f"base: {spec.method} on {cfg.base.dataset.column}, student {spec.student.arch}, "
        f"{cfg.epochs} epoch(s) per trial, seeds {cfg.seeds}",
        f"objective: {cfg.objective.metric} of the {cfg.objective.epoch} epoch on the "
        f"validation split ({cfg.base.dataset.val_fraction:g} of train), maximised; "
        "the test split is never read",
        "space: " + "; ".join(f"{k} {space(v)}" for k, v in cfg.space.items()),
        f"budget: {cfg.budget.n_trials} finished trials"
        + (f", timeout {cfg.budget.timeout:g} s" if cfg.budget.timeout else "")
        + f"; pruner {cfg.pruner.type}; TPE seed {cfg.sampler.seed}",
    ]
    if cfg.enqueue:
        lines.append(f"enqueued first: {cfg.enqueue}")
    return "\n".join(lines)
