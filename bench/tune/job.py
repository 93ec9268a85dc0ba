"""What one study's trials share: the tune config, where the study is stored, how its
runs execute, and the planned runs of one trial (picklable, for the worker processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine.options import ExecOptions
from bench.experiment.plan import PlannedRun, expand
from bench.experiment.search import TuneConfig, trial_suite


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


def trial_runs(cfg: TuneConfig, point: dict[str, Any]) -> list[PlannedRun]:
    """One planned run per seed (validated and keyed by :func:`bench.experiment.plan.expand`)."""
    return expand(trial_suite(cfg, point))


def first_point(cfg: TuneConfig) -> dict[str, Any]:
    """A point of the space (each param's first extreme): enough to plan a trial's runs."""
    return {k: s.extremes()[0] for k, s in cfg.space.items()}
