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
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import logging
import multiprocessing as mp
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from bench.core.atomic import atomic_write_bytes, atomic_write_text
from bench.core.errors import ConfigError
from bench.engine.options import ExecOptions
from bench.engine.teachers import warm_teachers
from bench.engine.train import NonFiniteLoss
from bench.experiment.plan import PlannedRun, expand
from bench.experiment.search import TuneConfig, trial_suite
from bench.tracking.client import flatten_params, owner_alive, owner_token
from bench.tracking.runs import MlflowRun

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward n_trials


@dataclass(frozen=True)
class TuneJob:
    """Everything a worker process needs (picklable)."""

    cfg: TuneConfig
    study: str
    storage: str
    results_root: Path
    device: str
    tracking_uri: str | None  # None: no MLflow
    parent_run_id: str | None = None
    experiment_id: str | None = None
    progress: bool = False
    deadline: float | None = None  # time.time() after which no trial starts (budget.timeout)
    labels: tuple[tuple[str, str], ...] = ()  # MLflow tags of the study's runs (suite, row)
    threads: int | None = None  # torch threads of each trial's runs (bench.engine.runtime)

    @property
    def out_dir(self) -> Path:
        return self.results_root / "tune" / self.study

    @property
    def options(self) -> ExecOptions:
        """How a trial's runs execute: never with the test split (tuning reads val only)."""
        return ExecOptions(
            results_root=self.results_root,
            device=self.device,
            num_workers=self.cfg.num_workers,
            progress=self.progress,
            with_test=False,
            threads=self.threads,
        )


def default_storage(results_root: Path, study: str) -> str:
    path = Path(results_root).resolve() / "tune" / study / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _storage(url: str, create_tables: bool = False) -> optuna.storages.RDBStorage:
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
    storage = _storage(job.storage, create_tables=create)
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


# ----------------------------------------------------------------------- the objective


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


def trial_runs(cfg: TuneConfig, point: dict[str, Any]) -> list[PlannedRun]:
    """One planned run per seed (validated and keyed by :func:`bench.experiment.plan.expand`)."""
    return expand(trial_suite(cfg, point))


def first_trial(job: TuneJob) -> list[PlannedRun]:
    """A trial's first run, at the space's low corner: its teachers are every trial's (the
    search space never reaches a teacher), trained once before workers fan out."""
    return trial_runs(job.cfg, {k: s.extremes()[0] for k, s in job.cfg.space.items()})[:1]


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
    from bench.engine.runtime import resolve_threads, running_at

    start = time.time()
    results_root = Path(results_root).resolve()
    budget = cfg.budget.model_copy(
        update={k: v for k, v in {"n_trials": n_trials, "timeout": timeout}.items() if v}
    )
    cfg = cfg.model_copy(update={"budget": budget})
    study_name = study_name or cfg.name
    device = device or cfg.device
    ExecOptions(results_root, device).resolved()  # fail early on cuda-without-GPU
    if mlflow:
        from bench.tracking import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(results_root, tracking_uri)
    else:
        tracking_uri = None
    job = TuneJob(
        cfg=cfg,
        study=study_name,
        storage=storage or default_storage(results_root, study_name),
        results_root=results_root,
        device=device,
        tracking_uri=tracking_uri,
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
    ran = 0
    try:
        if remaining:
            workers = max(1, min(workers, remaining))
            job = replace(job, threads=resolve_threads(threads, None, workers))
            with running_at(job.threads):  # the teachers too; this process's count after
                warm_teachers(first_trial(job), job.options)  # test-free: with_test off
                if workers == 1:
                    ran = run_worker(job, 0, remaining)
                else:
                    ran = _run_parallel(job, workers, remaining)
    except BaseException as exc:
        if job.tracking_uri:
            stopped = isinstance(exc, KeyboardInterrupt)
            end_parent(job, "KILLED" if stopped else "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    study = open_study(job)
    best = write_outputs(job, study)
    if job.tracking_uri:
        finish_parent(job, study, best)
    counts = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState
    }
    return TuneOutcome(study, job.out_dir, ran, best, counts)


def _run_parallel(job: TuneJob, workers: int, remaining: int) -> int:
    """``workers`` processes (spawned: no forked torch state) sharing the study, each at
    ``job.threads`` torch threads."""
    shares = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
    worker_job = replace(job, progress=False)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_worker, worker_job, i, share) for i, share in enumerate(shares)]
        return sum(f.result() for f in futures)


def describe(cfg: TuneConfig, results_root: Path, study: str | None, storage: str | None) -> str:
    """The ``--dry-run`` summary: the base run, the space, the budget, the study so far."""
    study = study or cfg.name
    out = Path(results_root).resolve() / "tune" / study
    url = storage or f"sqlite:///{out / 'optuna.db'}"
    done = "new study"
    if storage is not None or (out / "optuna.db").is_file():
        try:
            s = optuna.load_study(study_name=study, storage=_storage(url))
            done = f"{count_finished(s)} finished trial(s) so far"
        except Exception:  # not created yet (or unreachable: the real run will say)
            pass
    runs = trial_runs(cfg, {k: v.extremes()[0] for k, v in cfg.space.items()})
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


# --------------------------------------------------------------------------- outputs


def best_record(job: TuneJob, study: optuna.Study) -> dict[str, Any] | None:
    """What ``best.yaml`` holds: the best trial's full method params (``params``, which a
    suite entry takes with ``params_from``), the searched subset and where it came from."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    cfg = job.cfg
    params = best.user_attrs.get("method_params")
    if params is None:  # a trial from another tool: rebuild from its params
        params = trial_runs(cfg, dict(best.params))[0].spec.params
    counts = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    return {
        "study": job.study,
        "method": cfg.base.method.name,
        "params": params,
        "searched": dict(best.params),
        "value": best.value,
        "objective": (
            f"{cfg.objective.metric} ({cfg.objective.epoch} epoch of {cfg.epochs}), "
            f"mean over seeds {cfg.seeds}; validation split carved from the training images"
        ),
        "values_per_seed": best.user_attrs.get("values_per_seed"),
        "trial": best.number,
        "trials": counts,
        "dataset": cfg.base.dataset.column,
    }


def write_outputs(job: TuneJob, study: optuna.Study, top: int = 10) -> dict[str, Any] | None:
    """best.yaml, trials.csv, top.md and the plots (each written atomically)."""
    out = job.out_dir
    df = study.trials_dataframe()
    if len(df):
        atomic_write_text(out / "trials.csv", df.to_csv(index=False))
        cols = [c for c in df.columns if c in ("number", "value", "state", "duration")]
        cols += [c for c in df.columns if c.startswith("params_")]
        complete = df[df["state"] == "COMPLETE"].sort_values("value", ascending=False)
        table = complete[cols].head(top).copy()
        if "duration" in table:
            table["duration"] = table["duration"].dt.total_seconds().round(1)
        table.columns = [c.removeprefix("params_") for c in table.columns]
        text = f"# {job.study}: top {len(table)} of {len(df)} trials (val accuracy)\n\n"
        atomic_write_text(out / "top.md", text + table.to_markdown(index=False) + "\n")
    best = best_record(job, study)
    if best is not None:
        header = (
            f"# Best params of tune study {job.study!r} (python -m bench tune).\n"
            f"# Use in a suite: methods: [{{name: {best['method']}, "
            f"params_from: {out / 'best.yaml'}}}]\n"
        )
        body = yaml.safe_dump(best, sort_keys=False)
        atomic_write_text(out / "best.yaml", header + body)
    write_plots(study, out)
    return best


def write_plots(study: optuna.Study, out: Path) -> list[str]:
    """history.png, importances.png, parallel.png; a plot that cannot be drawn (too few
    completed trials, nothing varies) is skipped with a note in the log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = [
        name
        for name in {k for t in complete for k in t.params}
        if len({repr(t.params.get(name)) for t in complete}) > 1
    ]
    plots = {
        "history.png": (ovm.plot_optimization_history, len(complete) >= 1),
        "importances.png": (ovm.plot_param_importances, len(complete) >= 2 and bool(varying)),
        "parallel.png": (ovm.plot_parallel_coordinate, len(complete) >= 1),
    }
    written = []
    for name, (plot, possible) in plots.items():
        if not possible:
            log.info("tune: %s skipped (needs more completed trials / a varying param)", name)
            (out / name).unlink(missing_ok=True)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            atomic_write_bytes(out / name, buf.getvalue())
            written.append(name)
        except Exception as exc:  # a plot is a nice-to-have; the study's data is saved
            log.warning("tune: %s not drawn: %s", name, exc)
            plt.close("all")
    return written


# ----------------------------------------------------------------- tracking (MLflow)
# The study is an experiment ``tune-<study>`` with one parent run (kept across resumed
# invocations: its id is a user attr of the study) and one child run per trial, through
# bench.tracking's run API; a tracking error never fails a trial (``guard``).


def _parent_attr(uri: str) -> str:
    return "mlflow_parent_run_id:" + hashlib.sha1(uri.encode()).hexdigest()[:10]


def _parent(job: TuneJob) -> MlflowRun:
    return MlflowRun(job.tracking_uri, job.experiment_id, job.parent_run_id)


def start_parent(job: TuneJob, study: optuna.Study) -> TuneJob:
    """Open the experiment and (re)start the study's parent run; mark trial runs left
    RUNNING by dead processes KILLED. An unusable store stops before any trial runs."""
    from bench.tracking.client import open_experiment, owner_alive, usable
    from bench.tracking.runs import provenance

    uri = job.tracking_uri
    experiment_id = open_experiment(uri, f"tune-{job.study}")
    with usable(uri):
        run_id = study.user_attrs.get(_parent_attr(uri))
        if run_id is not None:
            parent = MlflowRun(uri, experiment_id, run_id)
            parent.resume()
        else:
            tags = {
                "kind": "tune-study",
                "optuna.study": job.study,
                **dict(job.labels),
                **provenance(),
                "command": " ".join(sys.argv),
            }
            params = flatten_params(
                job.cfg.model_dump(mode="json", exclude={"budget", "description"})
            )
            parent = MlflowRun.start(uri, experiment_id, job.study, tags, params)
            study.set_user_attr(_parent_attr(uri), parent.run_id)
        for r in parent.search("attributes.status = 'RUNNING'"):
            if r.info.run_id != parent.run_id and not owner_alive(r.data.tags.get("owner")):
                stale = MlflowRun(uri, experiment_id, r.info.run_id)
                stale.end("KILLED", error="killed: its tune worker process is gone")
    return replace(job, parent_run_id=parent.run_id, experiment_id=experiment_id)


class TrialTracker:
    """The child run of one trial: params at the start, metrics live per epoch (step =
    seed index * epochs + epoch), the objective and the Optuna state at the end."""

    def __init__(self, run: MlflowRun | None) -> None:
        self.run = run

    @classmethod
    def start(cls, job: TuneJob, number: int, runs: list[PlannedRun]) -> TrialTracker:
        from bench import tracking
        from bench.tracking.client import owner_token
        from bench.tracking.runs import provenance

        if not job.parent_run_id or not tracking.enabled():
            return cls(None)
        with tracking.guard(f"starting the MLflow run of trial {number}"):
            tags = {
                "kind": "tune-trial",
                "optuna.study": job.study,
                **dict(job.labels),
                "optuna.trial": str(number),
                "run_keys": ",".join(r.key for r in runs),
                "owner": owner_token(),
                **provenance(),
            }
            spec = runs[0].spec.model_dump(mode="json", exclude={"seed"})
            params = {**flatten_params(spec), "seeds": str([r.spec.seed for r in runs])}
            return cls(_parent(job).child(f"trial {number}", tags, params))
        return cls(None)

    def on_epoch(self, step: int, record: dict[str, Any]) -> None:
        from bench import tracking

        if self.run is None or not tracking.enabled():
            return
        what = f"logging epoch metrics of trial run {self.run.run_id}"
        with tracking.guard(what):
            self.run.log_epochs_later([record], what, step=lambda _: step)

    def end(self, state: TrialState, value: float | None = None, error: str | None = None):
        from bench import tracking

        if self.run is None or not tracking.enabled():
            return
        with tracking.guard(f"ending the MLflow run of trial run {self.run.run_id}"):
            self.run.flush()
            tags = {"optuna.state": state.name, **({"error": error} if error else {})}
            self.run.log(metrics={} if value is None else {"objective": value}, tags=tags)
            status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}
            self.run.end(status.get(state, "FAILED"))


def end_parent(job: TuneJob, status: str, error: str) -> None:
    """End the parent run when the invocation stops on an error or Ctrl-C."""
    from bench import tracking

    if not tracking.enabled():
        return
    with tracking.guard("ending the study's MLflow run"):
        _parent(job).end(status, error=error)


def finish_parent(job: TuneJob, study: optuna.Study, best: dict[str, Any] | None) -> None:
    """Counts and the best value as metrics, the outputs as artifacts; end FINISHED."""
    from bench import tracking

    if not tracking.enabled():
        return
    with tracking.guard("ending the study's MLflow run"):
        metrics = {
            f"trials_{s.name.lower()}": len(study.get_trials(False, (s,)))
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        tags = {}
        if best is not None:
            metrics["best_value"] = best["value"]
            tags = {"best_trial": str(best["trial"]), "best_params": json.dumps(best["searched"])}
        parent = _parent(job)
        parent.log(metrics=metrics, tags=tags)
        outputs = sorted(job.out_dir.iterdir())
        parent.log_files(p for p in outputs if p.suffix in (".yaml", ".csv", ".md", ".png"))
        parent.end("FINISHED")
