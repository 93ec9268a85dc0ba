"""Equal-budget tuning inside a suite: the Optuna study each searched row x column needs.

A method entry with ``search:`` becomes, per column, one study of the suite's
``protocol:`` budget (the same trials, epochs per trial, seeds, sampler seed and pruner
for every searched row: a row cannot carry a budget of its own), run on the labelled
validation split by :mod:`bench.tune.run` (the test split is never loaded while tuning).
The row then trains its best point over the suite's seeds, with test, as ``<row>
(tuned)``. A study's key hashes its base run, space and budget (never where the data
lives), so a re-run finds and reuses it and a changed budget starts a new one.

Low in the import graph (pydantic only): planning a suite needs the studies' keys and the
best points of finished ones; running them is :mod:`bench.tune.suite_studies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.core.config import DatasetConfig, MethodConfig, SuiteConfig, teachers_of
from bench.core.keys import content_key, dataset_identity_dump, weights_by_content
from bench.experiment.search import (
    Budget,
    Objective,
    SamplerConfig,
    TuneBase,
    TuneConfig,
    check_space,
)


@dataclass(frozen=True)
class StudyPlan:
    """One searched row in one column: its tune config, key and study name."""

    entry: int  # index of the method entry in the suite
    row: str  # the tuned row's label
    column: str
    cfg: TuneConfig

    @property
    def key(self) -> str:
        return study_key(self.cfg)

    @property
    def name(self) -> str:
        """The Optuna study (and ``<results>/tune/<name>/``): readable and keyed."""
        slug = "".join(c if c.isalnum() else "-" for c in self.row.lower()).strip("-")
        return f"{'-'.join(filter(None, slug.split('-')))}--{self.column}--{self.key[:12]}"


def tuned_label(base: str) -> str:
    return f"{base} (tuned)"


def study_key(cfg: TuneConfig) -> str:
    """Hash of everything that decides a study's trials: base run (without data
    locations), epochs, seeds, objective, space, enqueued points and the budget."""
    identity = cfg.identity()
    base = weights_by_content(dict(identity["base"]))  # a pretrained: file by its content
    base["dataset"] = {k: v for k, v in dataset_identity_dump(base["dataset"]).items() if k != "id"}
    base["pretrain"] = {
        name: {**stage, "dataset": dataset_identity_dump(stage["dataset"])}
        for name, stage in base.get("pretrain", {}).items()
    }
    return content_key(
        {
            **identity,
            "base": base,
            "space": {k: v.model_dump(mode="json") for k, v in cfg.space.items()},
            "enqueue": cfg.enqueue,
            "n_trials": cfg.budget.n_trials,
            "sampler": cfg.sampler.model_dump(mode="json"),
            "pruner": cfg.pruner.model_dump(mode="json"),
        }
    )


def default_point(entry: MethodConfig, suite: SuiteConfig, params_cls) -> dict[str, Any] | None:
    """The row's own value of every searched key (its params' defaults, the suite's
    recipe), or None when one lies outside its range (then nothing is enqueued)."""
    params = params_cls.model_validate(entry.params).model_dump(mode="json")
    optim = (entry.optim or suite.optim).model_dump(mode="json")
    point = {}
    for key, space in entry.search.items():
        section, _, field = key.partition(".")
        value = optim[field] if section == "optim" and field else params[key]
        if space.choices is not None:
            if value not in space.choices:
                return None
        elif not space.low <= value <= space.high:
            return None
        point[key] = value
    return point


def study_config(
    suite: SuiteConfig, index: int, ds: DatasetConfig, params_cls, display: str
) -> StudyPlan:
    """The study of method entry ``index`` in column ``ds`` under the suite's protocol."""
    entry, protocol = suite.methods[index], suite.protocol
    assert protocol is not None and entry.search  # checked by SuiteConfig
    check_space(
        entry.name, entry.params, entry.search, params_cls, f"methods.{index}.search",
        fixed_where=f"methods.{index}.params",
    )  # fmt: skip
    enqueue = default_point(entry, suite, params_cls) if protocol.enqueue_defaults else None
    stages = {ds.pretrain: suite.pretrain[ds.pretrain]} if ds.pretrain else {}
    base = TuneBase(
        dataset=ds.model_copy(update={"teachers": None}),
        teachers=teachers_of(suite, ds),
        student=entry.student or suite.student,
        optim=entry.optim or suite.optim,
        method=MethodConfig(name=entry.name, params=entry.params, params_from=entry.params_from),
        pretrain=stages,
    )
    cfg = TuneConfig(
        name="suite-study",
        base=base,
        space=entry.search,
        enqueue=[enqueue] if enqueue else [],
        budget=Budget(n_trials=protocol.trials, epochs=protocol.epochs),
        seeds=protocol.seeds,
        objective=Objective(epoch=protocol.objective),
        sampler=SamplerConfig(
            seed=protocol.sampler_seed, n_startup_trials=protocol.n_startup_trials
        ),
        pruner=protocol.pruner,
        device=suite.device,
        num_workers=suite.num_workers,
    )
    return StudyPlan(index, tuned_label(entry.label or display), ds.column, cfg)


def best_path(results_root: Path, plan: StudyPlan) -> Path:
    return Path(results_root) / "tune" / plan.name / "best.yaml"


def read_best(results_root: Path, plan: StudyPlan) -> dict[str, Any] | None:
    """The searched values of a finished study's best trial (its ``best.yaml``), or None
    while the study has not ended its budget (trials that completed, were pruned or
    failed on a non-finite loss; a study resumed after a kill runs its budget in full)."""
    path = best_path(results_root, plan)
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text())
    done = sum((data.get("trials") or {}).get(s, 0) for s in ("complete", "pruned", "fail"))
    if done < plan.cfg.budget.n_trials or not isinstance(data.get("searched"), dict):
        return None
    return dict(data["searched"])


def format_point(point: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
    )
