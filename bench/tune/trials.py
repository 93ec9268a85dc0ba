"""The trials of a tune job: the objective (a trial's runs on the validation split, each
epoch reported to the pruner and to the trial's MLflow run) and the workers that run them,
in this process or in a pool of spawned processes sharing the study."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from dataclasses import replace
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from bench.core.errors import ConfigError
from bench.engine.train import NonFiniteLoss
from bench.experiment.search import TuneConfig
from bench.tracking.client import owner_token
from bench.tune.job import TuneJob, trial_runs
from bench.tune.study import FINISHED, open_study
from bench.tune.tracker import TrialTracker


def suggest(trial: optuna.Trial, cfg: TuneConfig) -> dict[str, Any]:
    point = {}
    for key, s in cfg.space.items():
        if s.choices is not None:
            point[key] = trial.suggest_categorical(key, s.choices)
        elif s.type == "int":
            step = int(s.step or 1)
            point[key] = trial.suggest_int(key, int(s.low), int(s.high), step=step, log=s.log)
        else:
            point[key] = trial.suggest_float(key, s.low, s.high, step=s.step, log=s.log)
    return point


class Objective:
    """Validation accuracy of one trial; per-epoch values go to the pruner (and MLflow)."""

    def __init__(self, job: TuneJob) -> None:
        self.job = job
        self.options = job.options.resolved()  # once per worker process

    def __call__(self, trial: optuna.Trial) -> float:
        from bench.experiment.runner import execute

        job, cfg = self.job, self.job.cfg
        point = suggest(trial, cfg)
        trial.set_user_attr("owner", owner_token())  # a killed worker's trial is failed
        runs = trial_runs(cfg, point)
        trial.set_user_attr("method_params", runs[0].spec.params)
        trial.set_user_attr("run_keys", [r.key for r in runs])
        epochs = runs[0].spec.optim.epochs
        tracker = TrialTracker.start(job, trial.number, runs)
        values: list[float] = []
        try:
            for k, run in enumerate(runs):

                def report(epoch: int, record: dict[str, Any], k=k, seed=run.spec.seed) -> None:
                    step = k * epochs + epoch  # seeds run one after the other
                    tracker.on_epoch(step, record)
                    if "val_acc" not in record:
                        raise ConfigError("tune: the trial has no validation split to score")
                    trial.report(record["val_acc"], step)
                    if step < len(runs) * epochs and trial.should_prune():  # not when done
                        raise optuna.TrialPruned(
                            f"seed {seed} epoch {epoch}: val_acc {record['val_acc']:.4f}"
                        )

                rec = execute(run, self.options, callbacks=[report])
                metrics = rec.metrics
                value = metrics.val_acc if cfg.objective.epoch == "last" else metrics.best_val_acc
                values.append(float(value))
        except optuna.TrialPruned as exc:
            tracker.end(TrialState.PRUNED, error=str(exc))
            raise
        except BaseException as exc:
            tracker.end(TrialState.FAIL, error=f"{type(exc).__name__}: {exc}")
            raise
        trial.set_user_attr("values_per_seed", values)
        tracker.end(TrialState.COMPLETE, value=float(np.mean(values)))
        return float(np.mean(values))


def run_worker(job: TuneJob, worker: int, n_trials: int, threads: int | None = None) -> int:
    """One worker: ``study.optimize`` for ``n_trials`` (stops early once the whole study
    has ``budget.n_trials`` finished trials, whoever ran them). Returns trials it ran.
    Its trials run at ``threads`` (default: ``job.threads``) torch threads."""
    from bench.engine.runtime import apply_threads

    apply_threads(threads or job.threads)
    timeout = None if job.deadline is None else job.deadline - time.time()
    if timeout is not None and timeout <= 0:
        return 0
    study = open_study(job, worker)
    ran: list[int] = []
    study.optimize(
        Objective(job),
        n_trials=n_trials,
        timeout=timeout,
        catch=(NonFiniteLoss,),
        callbacks=[
            lambda _study, trial: ran.append(trial.number),
            optuna.study.MaxTrialsCallback(job.cfg.budget.n_trials, states=FINISHED),
        ],
        gc_after_trial=True,
    )
    return len(ran)


def run_trials(job: TuneJob, workers: int, remaining: int) -> int:
    """``remaining`` trials over ``workers`` workers: in this process when one, else in a
    pool. Returns how many trials ran."""
    if workers == 1:
        return run_worker(job, 0, remaining)
    return _run_parallel(job, workers, remaining)


def _run_parallel(job: TuneJob, workers: int, remaining: int) -> int:
    """``workers`` processes (spawned: no forked torch state) sharing the study, each at
    ``job.threads`` torch threads."""
    shares = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
    worker_job = replace(job, progress=False)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_worker, worker_job, i, share) for i, share in enumerate(shares)]
        return sum(f.result() for f in futures)
