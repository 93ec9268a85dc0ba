"""Tune YAML -> a checked :class:`~bench.experiment.search.TuneConfig`: what pydantic cannot
see (names, the method's params and space, a validation split, local files) checked
through the suite's planner and pre-run checks, one :class:`ConfigError` line each.

Apart from :mod:`bench.experiment.search` (the schema) so that the schema stays below the
planner, which plans a suite's studies with it (:mod:`bench.experiment.protocol`).
"""

from __future__ import annotations

import copy
from pathlib import Path

from pydantic import ValidationError

from bench.core.config import apply_override, format_validation_error, read_yaml
from bench.core.errors import ConfigError
from bench.experiment.plan import expand
from bench.experiment.plugins import METHODS
from bench.experiment.preflight import check_suite
from bench.experiment.search import TuneConfig, check_space, trial_suite


def check_tune(cfg: TuneConfig, source: str) -> None:
    """What pydantic cannot see: names, params of the method, a validation split."""
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
    check_space(
        base.method.name, base.method.params, cfg.space, cls.Params, f"{source}: space",
        fixed_where="base.method.params",
    )  # fmt: skip
    for i, point in enumerate(cfg.enqueue):
        for key in point:
            if key not in cfg.space:
                raise ConfigError(f"{source}: enqueue.{i}.{key}: not a key of space")
        try:
            own = {k: v for k, v in point.items() if not k.startswith("optim.")}
            cls.Params.model_validate({**base.method.params, **own})
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
