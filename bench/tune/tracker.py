"""A tune study in MLflow: an experiment ``tune-<study>`` with one parent run (kept across
resumed invocations: its id is a user attr of the study) and one child run per trial,
through bench.tracking's run API; a tracking error never fails a trial (``guard``)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.core.specs import PlannedRun
from bench.tracking.client import flatten_params
from bench.tracking.runs import MlflowRun
from bench.tune.job import TuneJob
from bench.tune.study import ENDED, trial_counts


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
        metrics = {f"trials_{k}": n for k, n in trial_counts(study, ENDED).items()}
        tags = {}
        if best is not None:
            metrics["best_value"] = best["value"]
            tags = {"best_trial": str(best["trial"]), "best_params": json.dumps(best["searched"])}
        parent = _parent(job)
        parent.log(metrics=metrics, tags=tags)
        outputs = sorted(job.out_dir.iterdir())
        parent.log_files(p for p in outputs if p.suffix in (".yaml", ".csv", ".md", ".png"))
        parent.end("FINISHED")
