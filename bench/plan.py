"""SuiteConfig -> the list of runs: datasets x methods (x grid points, x teacher rows) x
seeds, each a frozen :class:`RunSpec` with a stable run key, plus its display metadata.

Names (datasets, models, methods), method params and local files are checked here, so a
bad suite fails before anything is trained or written.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.config import (
    DatasetConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    SuiteConfig,
    format_validation_error,
    read_yaml,
)
from bench.datasets import DATASETS
from bench.errors import ConfigError
from bench.models import MODELS
from bench.specs import PretrainSpec, RunSpec, dataset_identity
from methods import METHODS


@dataclass(frozen=True)
class RunMeta:
    """How a run is shown: its row and column in the suite's table."""

    suite: str
    row: str
    row_order: int
    column: str
    column_order: int
    seed: int
    method: str


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    meta: RunMeta

    @property
    def key(self) -> str:
        return self.spec.key


def counts_tasks(ds: DatasetConfig) -> bool:
    """Whether :func:`num_tasks` answers without loading the data: always, except for
    ``tasks: natural`` with a loader that has no ``natural_tasks`` counter."""
    return ds.tasks != "natural" or hasattr(DATASETS.get(ds.name), "natural_tasks")


def num_tasks(ds: DatasetConfig) -> int:
    """Teacher tasks of a dataset. ``natural`` asks the loader's ``natural_tasks`` counter;
    a loader without one has to load its data (the one lazy import of the data stack
    here: planning never needs it otherwise, :func:`counts_tasks`)."""
    if ds.tasks == "halves":
        return 2
    if ds.tasks == "natural":
        counter = getattr(DATASETS.get(ds.name), "natural_tasks", None)
        if counter is not None:  # the loader can tell without loading the data
            return counter(**ds.params)
        from bench.data import load_source

        groups = load_source(ds).groups
        if not groups:
            raise ConfigError(
                f"datasets: {ds.column}: tasks 'natural' but the loader has no groups"
            )
        return len(groups)
    return len(ds.tasks)


def _check_names(suite: SuiteConfig) -> None:
    columns = [ds.column for ds in suite.datasets]
    for i, column in enumerate(columns):
        if columns.index(column) != i:
            raise ConfigError(f"datasets.{i}.id: column {column!r} appears twice; give an id")
    for i, ds in enumerate(suite.datasets):
        if ds.name not in DATASETS:
            raise ConfigError(f"datasets.{i}.name: {_unknown(DATASETS, ds.name)}")
    archs = suite.teachers.arch if isinstance(suite.teachers.arch, list) else [suite.teachers.arch]
    for arch in archs:
        if arch not in MODELS:
            raise ConfigError(f"teachers.arch: {_unknown(MODELS, arch)}")
    if suite.student.arch not in MODELS:
        raise ConfigError(f"student.arch: {_unknown(MODELS, suite.student.arch)}")
    for i, m in enumerate(suite.methods):
        if m.name not in METHODS:
            raise ConfigError(f"methods.{i}.name: {_unknown(METHODS, m.name)}")
        if m.student and m.student.arch not in MODELS:
            raise ConfigError(f"methods.{i}.student.arch: {_unknown(MODELS, m.student.arch)}")
    inits = suite.teachers.pretrained
    for path in inits if isinstance(inits, list) else [inits]:
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"teachers.pretrained: {path}: no such file")
    for where, model in [("student", suite.student)] + [
        (f"methods.{i}.student", m.student) for i, m in enumerate(suite.methods) if m.student
    ]:
        if model.pretrained and not Path(model.pretrained).expanduser().is_file():
            raise ConfigError(f"{where}.pretrained: {model.pretrained}: no such file")
    _check_pretrain(suite)


def _check_pretrain(suite: SuiteConfig) -> None:
    """Stage names and sources exist; a column that uses a stage has no other init and
    only teachers whose architecture takes its backbone (students: :func:`_fits_stage`)."""
    for name, stage in suite.pretrain.items():
        if stage.dataset.name not in DATASETS:
            raise ConfigError(
                f"pretrain.{name}.dataset.name: {_unknown(DATASETS, stage.dataset.name)}"
            )
        if stage.arch not in MODELS:
            raise ConfigError(f"pretrain.{name}.arch: {_unknown(MODELS, stage.arch)}")
    t = suite.teachers
    for i, ds in enumerate(suite.datasets):
        if ds.pretrain is None:
            continue
        if ds.pretrain not in suite.pretrain:
            known = ", ".join(suite.pretrain) or "none defined"
            raise ConfigError(
                f"datasets.{i}.pretrain: unknown pretrain stage {ds.pretrain!r} (known: {known})"
            )
        inits = t.pretrained if isinstance(t.pretrained, list) else [t.pretrained]
        if any(inits):
            raise ConfigError(
                f"datasets.{i}.pretrain: teachers.pretrained is set too; choose one init"
            )
        for arch in t.arch if isinstance(t.arch, list) else [t.arch]:
            _fits_stage(suite, ds.pretrain, arch, t.params, f"datasets.{i}.pretrain", "teachers")


def _fits_stage(suite: SuiteConfig, name: str, arch: str, params, where: str, who: str) -> None:
    stage = suite.pretrain[name]
    if (arch, params) != (stage.arch, stage.params):
        raise ConfigError(
            f"{where}: stage {name!r} trains {stage.arch} {stage.params}, "
            f"which does not fit the {who}' {arch} {params}"
        )


def _unknown(registry, name: str) -> str:
    return f"unknown {registry.kind} {name!r} (known: {', '.join(registry.names())})"


def grid_points(entry: MethodConfig, where: str) -> list[dict[str, Any]]:
    keys = list(entry.grid)
    for key in keys:
        if key in entry.params:
            raise ConfigError(f"{where}.grid.{key}: also set in params; set it in one place")
    return [dict(zip(keys, values)) for values in itertools.product(*entry.grid.values())]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _row_label(entry: MethodConfig, cls, point: dict[str, Any]) -> str:
    base = entry.label or cls.display or entry.name
    if not point:
        return base
    changed = ", ".join(f"{k.rpartition('.')[2]}={_fmt(v)}" for k, v in point.items())
    return f"{base} ({changed})"


def _params_from(entry: MethodConfig, where: str) -> dict[str, Any]:
    """The ``params`` of the tuning result named by ``entry.params_from`` (validated)."""
    if entry.params_from is None:
        return {}
    path = Path(entry.params_from).expanduser()
    key = f"{where}.params_from"
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    params = data.get("params")
    if not isinstance(params, dict):
        raise ConfigError(f"{key}: {path}: expected a 'params' mapping (a tune best.yaml)")
    tuned_for = data.get("method")
    if tuned_for is not None and tuned_for != entry.name:
        raise ConfigError(
            f"{key}: {path}: params tuned for method {tuned_for!r}, not {entry.name!r}"
        )
    try:
        METHODS.get(entry.name).Params.model_validate(params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{key}: {path}: params")) from None
    return params


def resolve_entry(
    entry: MethodConfig, point: dict[str, Any], suite: SuiteConfig, where: str
) -> tuple[dict[str, Any], ModelConfig, OptimConfig]:
    """Method params (validated, defaults filled), student and optim for one grid point."""
    params = {**_params_from(entry, where), **entry.params}
    student = (entry.student or suite.student).model_dump()
    optim = (entry.optim or suite.optim).model_dump()
    for key, value in point.items():
        section, _, field = key.partition(".")
        if section == "student" and field:
            student[field] = value
        elif section == "optim" and field:
            optim[field] = value
        elif "." in key:
            raise ConfigError(f"{where}.grid.{key}: only method params, student.* and optim.*")
        else:
            params[key] = value
    cls = METHODS.get(entry.name)
    try:
        resolved = cls.Params.model_validate(params).model_dump(mode="json")
        student_cfg = ModelConfig.model_validate(student)
        optim_cfg = OptimConfig.model_validate(optim)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "", f"{where}.params")) from None
    if student_cfg.arch not in MODELS:
        raise ConfigError(f"{where}.grid.student.arch: {_unknown(MODELS, student_cfg.arch)}")
    return resolved, student_cfg, optim_cfg


def expand(suite: SuiteConfig, seeds: list[int] | None = None) -> list[PlannedRun]:
    """All runs of a suite, in table order (datasets, then rows, then seeds)."""
    _check_names(suite)
    seeds = list(seeds if seeds is not None else suite.seeds)
    rows: list[str] = []
    runs: list[PlannedRun] = []
    for ci, ds in enumerate(suite.datasets):
        n_tasks = None
        stage = PretrainSpec.from_config(suite.pretrain[ds.pretrain]) if ds.pretrain else None
        for mi, entry in enumerate(suite.methods):
            where = f"methods.{mi}"
            cls = METHODS.get(entry.name)
            for point in grid_points(entry, where):
                params, student, optim = resolve_entry(entry, point, suite, where)
                variants = [(params, _row_label(entry, cls, point))]
                if entry.name == "teacher" and "index" not in entry.params:
                    n_tasks = n_tasks if n_tasks is not None else num_tasks(ds)
                    variants = [
                        ({**params, "index": t}, f"{entry.label or cls.display} {t + 1}")
                        for t in range(n_tasks)
                    ]
                trained = (student, optim) if cls.trains else (None, None)
                if stage is not None and cls.trains:
                    if student.pretrained:
                        raise ConfigError(
                            f"{where}: student.pretrained and datasets.{ci}.pretrain are both "
                            "set; choose one init"
                        )
                    _fits_stage(suite, ds.pretrain, student.arch, student.params, where, "student")
                for run_params, label in variants:
                    if label not in rows:
                        rows.append(label)
                    for seed in seeds:
                        spec = RunSpec(
                            dataset=dataset_identity(ds),
                            teachers=suite.teachers,
                            student=trained[0],
                            method=entry.name,
                            params=run_params,
                            optim=trained[1],
                            seed=seed,
                            pretrain=stage,
                        )
                        meta = RunMeta(
                            suite=suite.name,
                            row=label,
                            row_order=rows.index(label),
                            column=ds.column,
                            column_order=ci,
                            seed=seed,
                            method=entry.name,
                        )
                        runs.append(PlannedRun(spec, meta))
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        rows_dup = sorted({r.meta.row for r in runs if r.key == dup})
        raise ConfigError(f"methods: rows {rows_dup} describe the same run; remove one")
    return runs


def planned_cells(runs: list[PlannedRun]) -> dict[tuple[str, str, int], str]:
    """The run key of every (row, column, seed) cell of a plan: what the tables keep when
    a row's params changed since older runs (``bench.report.drop_superseded``)."""
    return {(r.meta.row, r.meta.column, r.meta.seed): r.key for r in runs}
