"""The Optuna study of a tune job: its storage, sampler and pruner; created once (its
identity checked, its enqueued points queued) and loaded by every worker."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from bench.core.errors import ConfigError
from bench.experiment.search import TuneConfig
from bench.tracking.client import owner_alive
from bench.tune.job import TuneJob

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward n_trials
ENDED = (*FINISHED, TrialState.FAIL)  # the counts the outputs and MLflow report


def default_storage(results_root: Path, study: str) -> str:
    path = Path(results_root).resolve() / "tune" / study / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_of(url: str, create_tables: bool = False) -> optuna.storages.RDBStorage:
    # a long busy timeout: several processes write one SQLite file; a heartbeat marks the
    # trials of a killed worker as failed instead of leaving them running forever
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=60,
            grace_period=300,
            skip_table_creation=not create_tables,  # the tables are made once, by create
        )


def _sampler(cfg: TuneConfig, worker: int, n_existing: int) -> optuna.samplers.TPESampler:
    seed = int(np.random.SeedSequence([cfg.sampler.seed, worker, n_existing]).generate_state(1)[0])
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=cfg.sampler.n_startup_trials,
        multivariate=cfg.sampler.multivariate,
    )


def _pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.type == "percentile":
        return optuna.pruners.PercentilePruner(
            p.percentile, n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1,
            max_resource=cfg.epochs * len(cfg.seeds),
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def open_study(job: TuneJob, worker: int = 0, create: bool = False) -> optuna.Study:
    """Create (once, before any worker starts) or load the study."""
    storage = storage_of(job.storage, create_tables=create)
    if create:
        study = optuna.create_study(
            storage=storage,
            study_name=job.study,
            direction="maximize",
            pruner=_pruner(job.cfg),
            load_if_exists=True,
        )
        identity = job.cfg.identity()
        stored = study.user_attrs.get("identity")
        if stored is None:
            study.set_user_attr("identity", identity)
            study.set_user_attr("method", job.cfg.base.method.name)
        elif stored != identity:
            raise ConfigError(
                f"study {job.study!r} was run with another base/epochs/seeds/objective; its "
                "trials are not comparable with this file: pass --study NEW_NAME"
            )
        for point in job.cfg.enqueue:
            study.enqueue_trial(point, skip_if_exists=True)
    n_existing = len(storage.get_all_trials(storage.get_study_id_from_name(job.study)))
    return optuna.load_study(
        study_name=job.study,
        storage=storage,
        sampler=_sampler(job.cfg, worker, n_existing),
        pruner=_pruner(job.cfg),
    )


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_orphans(study: optuna.Study) -> int:
    """Mark FAIL the trials left RUNNING by a worker that is gone (``kill -9``): they never
    count toward the budget, and a resumed study does not wait for Optuna's heartbeat
    grace period to stop seeing them. Returns how many."""
    storage = study._storage
    n = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("owner")
        if owner is not None and not owner_alive(owner):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            n += 1
    return n


def trial_counts(study: optuna.Study, states=tuple(TrialState)) -> dict[str, int]:
    """How many trials of the study are in each of ``states``, by lower-case state name."""
    return {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in states}
