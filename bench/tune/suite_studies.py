"""Run the studies of a suite's searched rows (:mod:`bench.experiment.protocol`) before its runs.

Each study is a :func:`bench.tune.run.tune` of the row in one column under the suite's
``protocol:`` budget, on the validation split only (its trials run with
``with_test=False``: the test split is never loaded). A study that finished its budget
under this results root is read back, never run again; one that was killed resumes
without repeating a finished trial (its orphaned trial is marked failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.core.config import SuiteConfig
from bench.core.errors import BenchError
from bench.experiment.plan import plan_studies
from bench.experiment.protocol import StudyPlan, format_point, read_best


def run_studies(
    suite: SuiteConfig,
    results_root: Path,
    *,
    device: str,
    workers: int = 1,
    mlflow: bool = True,
    tracking_uri: str | None = None,
    progress: bool = False,
    out=None,
    threads: int | None = None,
) -> dict[tuple[int, str], dict[str, Any]]:
    """The best point of every searched row x column, tuning what is not finished."""
    from bench.tune.run import tune

    tuned = {}
    for study in plan_studies(suite):
        best = read_best(results_root, study)
        if best is None:
            outcome = tune(
                study.cfg,
                results_root,
                study_name=study.name,
                device=device,
                workers=workers,
                mlflow=mlflow,
                tracking_uri=tracking_uri,
                progress=progress,
                threads=threads,
                labels={"suite": suite.name, "row": study.row, "column": study.column},
            )
            best = read_best(results_root, study)
            if best is None:
                raise BenchError(
                    f"study {study.name} ({study.row} / {study.column}) ended without a "
                    f"completed trial ({outcome.counts}); see {outcome.out_dir}"
                )
            print(describe_outcome(study, outcome.ran, best), file=out, flush=True)
        tuned[(study.entry, study.column)] = best
    return tuned


def describe_outcome(study: StudyPlan, ran: int, best: dict[str, Any]) -> str:
    return (
        f"tuned {study.row} / {study.column}: {ran} trial(s) run, best of "
        f"{study.cfg.budget.n_trials}: {format_point(best)}"
    )


def describe_studies(studies: list[StudyPlan], results_root: Path) -> list[str]:
    """Dry-run lines: each study, its budget and space, and how far it is."""
    if not studies:
        return []
    first = studies[0].cfg
    lines = [
        f"studies ({len(studies)}), one budget for every searched row: "
        f"{first.budget.n_trials} trials of {first.epochs} epoch(s), seeds {first.seeds}, "
        f"TPE seed {first.sampler.seed}, pruner {first.pruner.type}; validation split only"
    ]
    for study, best in bests(studies, results_root):
        state = f"done: {format_point(best)}" if best is not None else "to tune"
        space = ", ".join(study.cfg.space)
        lines.append(f"  {study.name}  {study.row} / {study.column} [{space}]  {state}")
    return lines


def protocol_notes(studies: list[StudyPlan], results_root: Path) -> list[str]:
    """Table footnotes: the one budget of the tuned rows and each row's best params."""
    if not studies:
        return []
    cfg = studies[0].cfg
    notes = [
        f"(tuned) rows: each row and column tuned on the same budget, {cfg.budget.n_trials} "
        f"Optuna trials (TPE seed {cfg.sampler.seed}, {cfg.pruner.type} pruner) of "
        f"{cfg.epochs} epoch(s) on seed(s) {', '.join(map(str, cfg.seeds))}, maximising "
        f"validation accuracy ({cfg.objective.epoch} epoch); the test split is never read "
        "while tuning; trial 0 is the row's own params when they lie in the space."
    ]
    for study, best in bests(studies, results_root):
        if best is not None:
            notes.append(f"{study.row} / {study.column}: {format_point(best)}.")
    return notes


def bests(
    studies: list[StudyPlan], results_root: Path
) -> Iterator[tuple[StudyPlan, dict[str, Any] | None]]:
    """Each study with its best point, None until it has finished its budget."""
    for study in studies:
        yield study, read_best(results_root, study)
