"""What the harness trains, as frozen specs with content keys: a run (:class:`RunSpec`),
a teacher (:class:`TeacherSpec`) and a pretrain stage (:class:`PretrainSpec`).

Low in the import graph on purpose (pydantic, config and keys only; no torch): planning a
suite and printing a dry-run need the specs and their keys, never the training stack.

A spec holds everything that changes its result plus where its data lives; its key
(:func:`spec_key`) hashes the first and leaves out the second
(:data:`bench.core.keys.LOCATION_ONLY`), so moving the data directory keeps every finished
run, teacher and stage. A ``pretrained:`` file enters the key by its content (sha256),
never its path (:func:`bench.core.keys.weights_by_content`). :func:`legacy_key` and
:func:`path_key` are the keys older versions computed (with the locations; with the
paths), kept only to migrate finished results once (:mod:`bench.experiment.migrate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from bench.core.config import DatasetConfig, ModelConfig, OptimConfig, PretrainConfig, TeacherConfig
from bench.core.keys import content_key, weights_by_content, without_locations


def key_dump(spec: BaseModel) -> dict[str, Any]:
    """``spec``'s key content: its fields without data locations (every ``dataset`` dict,
    the nested pretrain stage's too) and with each ``pretrained:`` file's sha256 in place
    of its path; ``pretrain`` is left out when unset, so that specs without a stage keep
    the keys they had before the field existed."""
    return weights_by_content(without_locations(_dump(spec)))


def spec_key(spec: BaseModel) -> str:
    return content_key(key_dump(spec))


def legacy_key(spec: BaseModel) -> str:
    """The key of ``spec`` before keys left out data locations (root, archive,
    in_memory), with ``pretrained:`` paths as they were: what results written by
    earlier versions are filed under."""
    return content_key(_dump(spec))


def path_key(spec: BaseModel) -> str:
    """The key of ``spec`` before keys hashed ``pretrained:`` files by content: without
    data locations, with the files' paths (equal to :attr:`key` for a spec without
    files)."""
    return content_key(without_locations(_dump(spec)))


def _dump(spec: BaseModel) -> dict[str, Any]:
    """Optional fields added later are left out while unset, so older keys stand."""
    exclude = {k for k in ("pretrain", "tuned") if getattr(spec, k, "") is None}
    return spec.model_dump(mode="json", exclude=exclude or None)


class PretrainSpec(BaseModel):
    """Everything that determines one pretrained backbone (and where its source lives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: dict[str, Any]  # source: name, root, params, classes, split, augment
    arch: str
    params: dict[str, Any] = {}
    optim: OptimConfig
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: PretrainConfig) -> PretrainSpec:
        return cls(
            dataset=cfg.dataset.model_dump(mode="json"),
            arch=cfg.arch,
            params=cfg.params,
            optim=cfg.optim,
            seed=cfg.seed,
        )

    @property
    def key(self) -> str:
        return spec_key(self)

    def describe(self) -> str:
        ds = self.dataset
        classes = ds["classes"] if ds["classes"] == "all" else ",".join(map(str, ds["classes"]))
        return f"{ds['name']} classes {classes}, {self.arch}, {self.optim.epochs} epochs"


class TeacherSpec(BaseModel):
    """Everything that determines one teacher (and where its data lives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: dict[str, Any]  # dataset identity (name, root, params, split, tasks)
    task: int
    arch: str
    pretrained: str | None = None
    params: dict[str, Any] = {}
    optim: OptimConfig
    seed: int = 0
    pretrain: PretrainSpec | None = None  # backbone init (bench.engine.pretrain); None: scratch

    @property
    def key(self) -> str:
        return spec_key(self)


class RunSpec(BaseModel):
    """Everything that changes a run's result, plus where its data lives (not keyed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: dict[str, Any]
    teachers: TeacherConfig
    student: ModelConfig | None  # None for methods that train nothing (teacher rows, ensemble)
    method: str
    params: dict[str, Any]
    optim: OptimConfig | None
    seed: int
    pretrain: PretrainSpec | None = None  # backbone init of teachers and student
    tuned: str | None = (
        None  # key of the study that chose params (bench.experiment.protocol); None: as given
    )

    @property
    def key(self) -> str:
        return spec_key(self)

    def dataset_config(self) -> DatasetConfig:
        return DatasetConfig.model_validate(self.dataset)

    def teacher_specs(self, num_tasks: int) -> list[TeacherSpec]:
        t = self.teachers
        return [
            TeacherSpec(
                dataset=self.dataset,
                task=i,
                arch=arch,
                pretrained=init,
                params=params,
                optim=t.optim,
                seed=t.seed,
                pretrain=self.pretrain,
            )
            for i, (arch, params, init) in enumerate(t.per_task(num_tasks))
        ]


def dataset_identity(ds: DatasetConfig) -> dict[str, Any]:
    """The dataset part of a run spec: all but the display id and the init (``pretrain``,
    whose stage enters the spec as :attr:`RunSpec.pretrain`) and the column's teachers
    (:attr:`RunSpec.teachers`). Its locations stay in the
    spec (the runner loads from them) and out of the key (:func:`key_dump`)."""
    return ds.model_dump(mode="json", exclude={"id", "pretrain", "teachers"})


def unique_stages(specs: Iterable[PretrainSpec | None]) -> list[PretrainSpec]:
    """The distinct stages among ``specs`` (None: from scratch), in first-seen order."""
    return list({s.key: s for s in specs if s is not None}.values())


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
    study: str | None = (
        None  # tuned rows: the study (bench.experiment.protocol) that chose the params
    )
    pending: bool = False  # tuned rows whose study has not finished: placeholder params
    sweep: SweepPoint | None = None  # dose-response rows: the weight and its value
    stands_for: tuple[SweepPoint, ...] = ()  # sweep points this run also is (same spec)


@dataclass(frozen=True)
class SweepPoint:
    """One point of a ``sweep:``: method entry, swept weight, its value, and the row."""

    entry: int
    param: str
    value: float
    row: str


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    meta: RunMeta

    @property
    def key(self) -> str:
        return self.spec.key
