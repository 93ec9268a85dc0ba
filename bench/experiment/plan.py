"""SuiteConfig -> the list of runs: datasets x methods (x grid points, x teacher rows) x
seeds, each a frozen :class:`RunSpec` with a stable run key, plus its display metadata.

Names (datasets, models, methods), method params and local files are checked here, so a
bad suite fails before anything is trained or written.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.core.config import (
    DatasetConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    SuiteConfig,
    TeacherConfig,
    format_validation_error,
    read_yaml,
    teachers_of,
)
from bench.core.errors import ConfigError
from bench.core.models import MODELS
from bench.core.specs import (
    PlannedRun,
    PretrainSpec,
    RunMeta,
    RunSpec,
    SweepPoint,
    dataset_identity,
)
from bench.data.datasets import DATASETS
from bench.experiment.plugins import METHODS
from bench.experiment.protocol import StudyPlan, read_best, study_config


def counts_tasks(ds: DatasetConfig) -> bool:
    """Whether :func:`num_tasks` answers without loading the data: always, except for
    ``tasks: natural`` with a loader whose ``natural_tasks`` cannot tell."""
    return ds.tasks != "natural" or _natural_tasks(ds) is not None


def _natural_tasks(ds: DatasetConfig) -> int | None:
    """The loader's ``natural_tasks`` count (None: only its loaded data tells)."""
    loader = DATASETS.get(ds.name)
    return loader.natural_tasks(loader.parse(ds.params, lenient=True))


def num_tasks(ds: DatasetConfig) -> int:
    """Teacher tasks of a dataset. ``natural`` asks the loader's ``natural_tasks`` counter;
    a loader that cannot tell has to load its data (the one lazy import of the data stack
    here: planning never needs it otherwise, :func:`counts_tasks`)."""
    if ds.tasks == "halves":
        return 2
    if ds.tasks == "natural":
        counted = _natural_tasks(ds)
        if counted is not None:  # the loader can tell without loading the data
            return counted
        from bench.data.prepare import load_source

        groups = load_source(ds).groups
        if not groups:
            raise ConfigError(
                f"datasets: {ds.column}: tasks 'natural' but the loader has no groups"
            )
        return len(groups)
    return len(ds.tasks)


def teacher_configs(suite: SuiteConfig) -> list[tuple[str, TeacherConfig]]:
    """The suite's teachers and every column's own, each with its dotted key."""
    own = [(f"datasets.{i}.teachers", ds.teachers) for i, ds in enumerate(suite.datasets)]
    return [("teachers", suite.teachers)] + [(k, t) for k, t in own if t is not None]


def _check_names(suite: SuiteConfig) -> None:
    columns = [ds.column for ds in suite.datasets]
    for i, column in enumerate(columns):
        if columns.index(column) != i:
            raise ConfigError(f"datasets.{i}.id: column {column!r} appears twice; give an id")
    for i, ds in enumerate(suite.datasets):
        if ds.name not in DATASETS:
            raise ConfigError(f"datasets.{i}.name: {_unknown(DATASETS, ds.name)}")
    for where, teachers in teacher_configs(suite):
        for arch, _ in teachers.archs_and_params():
            if arch not in MODELS:
                raise ConfigError(f"{where}.arch: {_unknown(MODELS, arch)}")
    if suite.student.arch not in MODELS:
        raise ConfigError(f"student.arch: {_unknown(MODELS, suite.student.arch)}")
    for i, m in enumerate(suite.methods):
        if m.name not in METHODS:
            raise ConfigError(f"methods.{i}.name: {_unknown(METHODS, m.name)}")
        if m.student and m.student.arch not in MODELS:
            raise ConfigError(f"methods.{i}.student.arch: {_unknown(MODELS, m.student.arch)}")
    for where, teachers in teacher_configs(suite):
        inits = teachers.pretrained
        for path in inits if isinstance(inits, list) else [inits]:
            if path and not Path(path).expanduser().is_file():
                raise ConfigError(f"{where}.pretrained: {path}: no such file")
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
    for i, ds in enumerate(suite.datasets):
        if ds.pretrain is None:
            continue
        t = teachers_of(suite, ds)
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
        for arch, params in t.archs_and_params():
            _fits_stage(suite, ds.pretrain, arch, params, f"datasets.{i}.pretrain", "teachers")


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


def sweep_points(entry: MethodConfig, cls, where: str) -> list[dict[str, Any]]:
    """The rows of a ``sweep:``: one per value of its one weight (``lambda_<term>``)."""
    ((param, values),) = entry.sweep.items()
    weights = [f for f in cls.Params.model_fields if f.startswith("lambda_")]
    if param not in weights:
        raise ConfigError(
            f"{where}.sweep.{param}: not a loss weight of method {entry.name!r} "
            f"(weights: {', '.join(weights) or 'none'})"
        )
    if param in entry.params:
        raise ConfigError(f"{where}.sweep.{param}: also set in params; set it in one place")
    return [{param: v} for v in values]


def entry_points(entry: MethodConfig, cls, where: str) -> list[dict[str, Any]]:
    return sweep_points(entry, cls, where) if entry.sweep else grid_points(entry, where)


def expand(
    suite: SuiteConfig,
    seeds: list[int] | None = None,
    tuned: Mapping[tuple[int, str], dict[str, Any]] | None = None,
) -> list[PlannedRun]:
    """All runs of a suite, in table order (datasets, then rows, then seeds).

    ``tuned``: the best point of each finished study, by (method entry, column)
    (:func:`bench.experiment.protocol.read_best`); a searched row without one is planned with its
    own params as a placeholder, ``meta.pending`` (shown by the dry-run, never run)."""
    _check_names(suite)
    seeds = list(seeds if seeds is not None else suite.seeds)
    runs: list[PlannedRun] = []
    for ci, ds in enumerate(suite.datasets):
        column = _Column(suite, ci, ds)
        for mi, entry in enumerate(suite.methods):
            for row in _entry_rows(column, mi, entry, tuned or {}):
                runs += [row.run(seed) for seed in seeds]
    return _number_rows(_merge_sweep_duplicates(runs))


@dataclass
class _Column:
    """One dataset column of a suite, as its rows are planned."""

    suite: SuiteConfig
    index: int
    ds: DatasetConfig

    @functools.cached_property
    def stage(self) -> PretrainSpec | None:
        name = self.ds.pretrain
        return PretrainSpec.from_config(self.suite.pretrain[name]) if name else None

    @functools.cached_property
    def n_tasks(self) -> int:
        """Asked once per column, and only by a teacher row without an ``index``."""
        return num_tasks(self.ds)


@dataclass(frozen=True)
class _Row:
    """One table row in one column: every seed's run is this row at that seed."""

    spec: dict[str, Any]  # RunSpec fields but the seed
    meta: dict[str, Any]  # RunMeta fields but the seed

    def run(self, seed: int) -> PlannedRun:
        return PlannedRun(RunSpec(**self.spec, seed=seed), RunMeta(**self.meta, seed=seed))


def _entry_rows(
    column: _Column, mi: int, entry: MethodConfig, tuned: Mapping[tuple[int, str], dict[str, Any]]
) -> Iterator[_Row]:
    """The rows of method entry ``mi`` in ``column``: one per grid or sweep point, the
    tuned point of a searched entry, or one per teacher of a ``teacher`` entry."""
    suite, ds, where = column.suite, column.ds, f"methods.{mi}"
    cls = METHODS.get(entry.name)
    study = None
    if entry.search:
        if not cls.trains:
            raise ConfigError(f"{where}.search: {entry.name!r} trains nothing to tune")
        study = study_config(suite, mi, ds, cls.Params, cls.display or entry.name)
        points = [tuned.get((mi, ds.column)) or {}]
    else:
        points = entry_points(entry, cls, where)
    for point in points:
        params, student, optim = resolve_entry(entry, point, suite, where)
        label = study.row if study else _row_label(entry, cls, point)
        variants = cls.rows(params, label, lambda: column.n_tasks)
        if cls.trains:
            _check_init(column, student, where)
        sweep = None
        if entry.sweep:
            ((param, value),) = point.items()
            sweep = SweepPoint(mi, param, float(value), label)
        for run_params, row in variants:
            spec = dict(
                dataset=dataset_identity(ds),
                teachers=teachers_of(suite, ds),
                student=student if cls.trains else None,
                method=entry.name,
                params=run_params,
                optim=optim if cls.trains else None,
                pretrain=column.stage,
                tuned=study.key if study else None,
            )
            meta = dict(
                suite=suite.name,
                row=row,
                row_order=0,  # set by expand, once sweep duplicates are merged
                column=ds.column,
                column_order=column.index,
                method=entry.name,
                study=study.name if study else None,
                pending=bool(study) and not point,  # a searched row before its study ends
                sweep=sweep,
            )
            yield _Row(spec, meta)


def _check_init(column: _Column, student: ModelConfig, where: str) -> None:
    """A student of a column with a pretrain stage has no other init, and fits the stage."""
    if column.stage is None:
        return
    if student.pretrained:
        raise ConfigError(
            f"{where}: student.pretrained and datasets.{column.index}.pretrain are both "
            "set; choose one init"
        )
    suite = column.suite
    _fits_stage(suite, column.ds.pretrain, student.arch, student.params, where, "student")


def _merge_sweep_duplicates(runs: list[PlannedRun]) -> list[PlannedRun]:
    """A sweep point whose run is another row's run (``lambda_inter: 1`` is the default
    CKA row) is not run twice: that row's run stands for the point. Any other pair of
    rows describing the same run is an error."""
    first: dict[str, int] = {}
    out: list[PlannedRun | None] = []
    for run in runs:
        i = first.get(run.key)
        if i is None:
            first[run.key] = len(out)
            out.append(run)
            continue
        kept = out[i]
        if run.meta.sweep is None and kept.meta.sweep is not None:  # keep the plain row
            run, kept = kept, run
            out[i] = kept
        if run.meta.sweep is None:
            rows = sorted({kept.meta.row, run.meta.row})
            raise ConfigError(f"methods: rows {rows} describe the same run; remove one")
        points = (*kept.meta.stands_for, run.meta.sweep, *run.meta.stands_for)
        out[i] = PlannedRun(kept.spec, dataclasses.replace(kept.meta, stands_for=points))
    return [r for r in out if r is not None]


def _number_rows(runs: list[PlannedRun]) -> list[PlannedRun]:
    rows: list[str] = []
    for run in runs:
        if run.meta.row not in rows:
            rows.append(run.meta.row)
    return [
        PlannedRun(r.spec, dataclasses.replace(r.meta, row_order=rows.index(r.meta.row)))
        for r in runs
    ]


def dose_points(runs: list[PlannedRun]) -> dict[tuple[int, str], dict[float, str]]:
    """Every sweep of a plan: (method entry, weight) -> {value: row that holds it}."""
    out: dict[tuple[int, str], dict[float, str]] = {}
    for run in runs:
        for p in ([run.meta.sweep] if run.meta.sweep else []) + list(run.meta.stands_for):
            out.setdefault((p.entry, p.param), {})[p.value] = run.meta.row
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def plan_studies(suite: SuiteConfig) -> list[StudyPlan]:
    """One study per searched method entry and column, in table order (bench.experiment.protocol)."""
    _check_names(suite)
    studies = []
    for ds in suite.datasets:
        for mi, entry in enumerate(suite.methods):
            if entry.search:
                cls = METHODS.get(entry.name)
                studies.append(study_config(suite, mi, ds, cls.Params, cls.display or entry.name))
    return studies


def finished_studies(
    studies: list[StudyPlan], results_root: Path
) -> dict[tuple[int, str], dict[str, Any]]:
    """The best point of every study that has finished its budget under ``results_root``."""
    out = {}
    for study in studies:
        best = read_best(results_root, study)
        if best is not None:
            out[(study.entry, study.column)] = best
    return out


def planned_cells(runs: list[PlannedRun]) -> dict[tuple[str, str, int], str]:
    """The run key of every (row, column, seed) cell of a plan: what the tables keep when
    a row's params changed since older runs (``bench.report.drop_superseded``)."""
    return {(r.meta.row, r.meta.column, r.meta.seed): r.key for r in runs}
