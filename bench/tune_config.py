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

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from bench.config import (
    DatasetConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    PositiveInt,
    SafeName,
    Strict,
    SuiteConfig,
    TeacherConfig,
    apply_override,
    format_validation_error,
    read_yaml,
)
from bench.errors import ConfigError

NonNegInt = Annotated[int, Field(ge=0)]
Choice = str | bool | int | float | None


class ParamSpace(Strict):
    """One searched param: ``{low, high[, log][, step]}`` (``type: int`` for integers)
    or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    type: Literal["float", "int"] = "float"
    choices: list[Choice] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpace:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int":
            for v in (self.low, self.high, self.step):
                if v is not None and v != int(v):
                    raise ValueError(f"type int: {v:g} is not an integer")
        return self

    def extremes(self) -> list[Any]:
        """The values the space can reach at its ends (every choice for categoricals)."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class TuneBase(Strict):
    """The run every trial starts from: one dataset (column) and one method (row)."""

    dataset: DatasetConfig
    teachers: TeacherConfig
    student: ModelConfig
    optim: OptimConfig = OptimConfig()
    method: MethodConfig


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


class PrunerConfig(Strict):
    """Pruning on per-epoch validation accuracy (step = epoch, seeds run one after the
    other). ``median``: MedianPruner; ``percentile``: PercentilePruner (prunes below the
    given percentile of the other trials at the same epoch: gentler for noisy, small
    validation splits); ``hyperband``: HyperbandPruner; ``none``."""

    type: Literal["median", "percentile", "hyperband", "none"] = "median"
    n_startup_trials: NonNegInt = 5  # median/percentile: completed trials before pruning
    n_warmup_steps: NonNegInt = 1  # median/percentile: epochs before a trial can be pruned
    percentile: Annotated[float, Field(gt=0, lt=100)] = 25.0  # percentile
    reduction_factor: Annotated[int, Field(ge=2)] = 3  # hyperband


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
    of single values, so :func:`bench.plan.expand` validates and keys it like any run)."""
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
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return "unknown key" if err["type"] == "extra_forbidden" else err["msg"]


def check_tune(cfg: TuneConfig, source: str) -> None:
    """What pydantic cannot see: names, params of the method, a validation split."""
    from bench.plan import expand
    from bench.preflight import check_suite
    from methods import METHODS

    base = cfg.base
    if base.dataset.val_fraction <= 0:
        raise ConfigError(
            f"{source}: base.dataset.val_fraction: tuning needs a validation split (> 0)"
        )
    if base.method.grid:
        raise ConfigError(f"{source}: base.method.grid: not used by tune; search with space")
    if base.method.name not in METHODS:
        known = ", ".join(METHODS.names())
        raise ConfigError(
            f"{source}: base.method.name: unknown method {base.method.name!r} (known: {known})"
        )
    cls = METHODS.get(base.method.name)
    if not cls.trains:
        raise ConfigError(
            f"{source}: base.method.name: {base.method.name!r} trains nothing; nothing to tune"
        )
    fields = list(cls.Params.model_fields)
    for key, space in cfg.space.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: space.{key}: not a param of method {base.method.name!r} "
                f"(params: {', '.join(fields) or 'none'})"
            )
        if key in base.method.params:
            raise ConfigError(
                f"{source}: space.{key}: also fixed in base.method.params; set it in one place"
            )
        names = ["choices"] * len(space.choices) if space.choices else ["low", "high"]
        for where, value in zip(names, space.extremes()):
            try:
                cls.Params.model_validate({**base.method.params, key: value})
            except ValidationError as exc:
                raise ConfigError(
                    f"{source}: space.{key}.{where}: {_first_error(exc)} (got {value!r})"
                ) from None
    for i, point in enumerate(cfg.enqueue):
        for key in point:
            if key not in cfg.space:
                raise ConfigError(f"{source}: enqueue.{i}.{key}: not a key of space")
        try:
            cls.Params.model_validate({**base.method.params, **point})
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source, f"enqueue.{i}")) from None
    # names (dataset, models, local files) and the run plan, through the suite machinery
    point = {key: space.extremes()[0] for key, space in cfg.space.items()}
    try:
        suite = trial_suite(cfg, point)
        expand(suite)
        check_suite(suite)  # typed dataset/model params, data layout, checkpoints
    except ConfigError as exc:
        msg = str(exc)
        for old, new in (("datasets.0", "dataset"), ("methods.0", "method")):
            if msg.startswith(old):
                msg = new + msg[len(old) :]
        raise ConfigError(f"{source}: base.{msg}") from None


def load_tune(path: str | Path, overrides: list[str] | None = None) -> TuneConfig:
    """Load, override (dotted ``--set``) and validate a tune file."""
    path = Path(path)
    data = copy.deepcopy(read_yaml(path))
    data.setdefault("name", path.stem)
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        cfg = TuneConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    check_tune(cfg, str(path))
    return cfg
