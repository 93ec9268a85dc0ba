"""Tune YAML -> validated :class:`TuneConfig`: one base run (the suite schema's pieces), a
search space over the method's params, the budget and the validation objective.

Errors are one :class:`ConfigError` line naming the file and the dotted key, like suites.

    name: tune_quick                 # study name (default: the file's stem)
    base:                            # one column and one row of a suite
      dataset: {name: digits, tasks: halves, val_fraction: 0.1}
      teachers: {arch: small_cnn, optim: {epochs: 15}}
      student: {arch: small_cnn}
      optim: {epochs: 20, lr: 0.002}
      method: {name: cka, params: {lambda_rec: 10}}   # fixed params
    space:                           # method params only
      alpha: {low: 0.0, high: 0.9}
      lambda_align: {low: 0.1, high: 100, log: true}
      distance: {choices: [euclidean, cosine, mmd]}
      some_int: {type: int, low: 1, high: 8}
    enqueue: [{alpha: 0.4, lambda_align: 10, distance: euclidean}]  # tried first
    budget: {n_trials: 30, timeout: null, epochs: 5}   # epochs per trial (overrides optim)
    seeds: [0]                       # objective = mean over seeds
    objective: {epoch: last}         # val accuracy of the last (or best) epoch
    sampler: {seed: 0, n_startup_trials: 10}
    pruner: {type: median, n_startup_trials: 5, n_warmup_steps: 1}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from bench.core.config import (
    DatasetConfig,
    MethodConfig,
    ModelConfig,
    NonNegInt,
    OptimConfig,
    ParamSpace,
    PositiveInt,
    PretrainConfig,
    PrunerConfig,
    SafeName,
    Strict,
    SuiteConfig,
    TeacherConfig,
)
from bench.core.errors import ConfigError

__all__ = ["ParamSpace", "PrunerConfig", "TuneConfig", "check_space", "trial_suite"]


class TuneBase(Strict):
    """The run every trial starts from: one dataset (column) and one method (row)."""

    dataset: DatasetConfig
    teachers: TeacherConfig
    student: ModelConfig
    optim: OptimConfig = OptimConfig()
    method: MethodConfig
    pretrain: dict[str, PretrainConfig] = {}  # the stage ``dataset.pretrain`` names, if any


class Budget(Strict):
    n_trials: PositiveInt = 20  # finished (complete + pruned) trials in the whole study
    timeout: Annotated[float, Field(gt=0)] | None = None  # s from start: no new trial after
    epochs: PositiveInt | None = None  # per trial; overrides base.optim.epochs


class Objective(Strict):
    """Maximised: accuracy on the labelled validation split carved from the training
    images (never the test split), mean over seeds."""

    metric: Literal["val_acc"] = "val_acc"
    epoch: Literal["last", "best"] = "last"


class SamplerConfig(Strict):
    """TPE; the seed is mixed with the worker index and the study size, so that parallel
    workers and resumed studies do not replay the same random start-up points."""

    seed: int = 0
    n_startup_trials: NonNegInt = 10
    multivariate: bool = True


class TuneConfig(Strict):
    name: SafeName
    description: str = ""
    base: TuneBase
    space: dict[str, ParamSpace] = Field(min_length=1)
    enqueue: list[dict[str, Any]] = []
    budget: Budget = Budget()
    seeds: list[int] = Field(default=[0], min_length=1)
    objective: Objective = Objective()
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: NonNegInt = 0  # data-loader workers per trial

    @property
    def epochs(self) -> int:
        optim = self.base.method.optim or self.base.optim
        return self.budget.epochs or optim.epochs

    def identity(self) -> dict[str, Any]:
        """What determines a trial's value for given params: a study's trials are only
        comparable when this is the same (the budget, sampler and pruner may change)."""
        return {
            "base": self.base.model_dump(mode="json"),
            "epochs": self.epochs,
            "seeds": self.seeds,
            "objective": self.objective.model_dump(mode="json"),
        }


def trial_suite(cfg: TuneConfig, point: dict[str, Any]) -> SuiteConfig:
    """The one-row, one-column suite of a trial: the base with ``point`` set (as a grid
    of single values, so :func:`bench.experiment.plan.expand` validates and keys it like any run)."""
    grid: dict[str, list[Any]] = {k: [v] for k, v in point.items()}
    if cfg.budget.epochs is not None:
        grid["optim.epochs"] = [cfg.budget.epochs]
    method = cfg.base.method.model_copy(update={"grid": grid})
    return SuiteConfig(
        name=f"tune-{cfg.name}",
        seeds=cfg.seeds,
        device=cfg.device,
        datasets=[cfg.base.dataset],
        teachers=cfg.base.teachers,
        student=cfg.base.student,
        optim=cfg.base.optim,
        methods=[method],
        num_workers=cfg.num_workers,
        pretrain=cfg.base.pretrain,
    )


RECIPE_KEYS = ("lr", "weight_decay", "batch_size")  # ``optim.*`` keys a search may cover


def check_space(
    method: str,
    fixed: dict[str, Any],
    space: dict[str, ParamSpace],
    params_cls,
    where: str,
    *,
    fixed_where: str = "params",
) -> None:
    """Searched keys are the method's params or ``optim.<recipe key>``, none also fixed in
    ``fixed``, and both ends of every range (each choice) are valid values of the param:
    one :class:`ConfigError` line naming ``<where>.<key>[.low|.high|.choices]``."""
    fields = list(params_cls.model_fields)
    for key, s in space.items():
        section, _, name = key.partition(".")
        recipe = section == "optim" and bool(name)
        if recipe and name not in RECIPE_KEYS:
            raise ConfigError(
                f"{where}.{key}: only optim.{', optim.'.join(RECIPE_KEYS)} may be searched "
                "(epochs are the budget's)"
            )
        if not recipe and key not in fields:
            raise ConfigError(
                f"{where}.{key}: not a param of method {method!r} "
                f"(params: {', '.join(fields) or 'none'}; or optim.lr, optim.weight_decay)"
            )
        if key in fixed:
            raise ConfigError(f"{where}.{key}: also fixed in {fixed_where}; set it in one place")
        names = ["choices"] * len(s.choices) if s.choices else ["low", "high"]
        for end, value in zip(names, s.extremes()):
            try:
                if recipe:
                    OptimConfig.model_validate({name: value})
                else:
                    params_cls.model_validate({**fixed, key: value})
            except ValidationError as exc:
                raise ConfigError(
                    f"{where}.{key}.{end}: {_first_error(exc)} (got {value!r})"
                ) from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
