"""The record of one run (``result.json``): one pydantic schema for its writer (the
runner), its store, MLflow tracking and the report.

A record is a :class:`RunRecord` object from the moment the runner builds it until the
store or the tracker writes it: :meth:`RunRecord.dump` gives the plain dict its JSON file
holds (key for key) and :meth:`RunRecord.parse` reads one back (:class:`InvalidRecord`
naming the bad fields). Records written by older versions stay readable: only the
identity of a run (``run_key, status, row, column, seed``) is required, unknown keys are
kept as they are.

The names a record's readers share are defined here, once: :data:`RunRecord.IDS` (the
identity columns of a results frame and the identity tags of an MLflow run) and
:meth:`Metrics.scalars` (the end-of-run numbers a run logs and a report reads).
"""

from __future__ import annotations

import platform
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

Status = Literal["finished", "failed"]
Number = float | int  # an int stays an int (smart union), so a record round-trips as written


class Planned(Protocol):
    """What a record is built from: a :class:`bench.experiment.plan.PlannedRun` (named here by its
    shape, so that the record sits below the planner in the import graph)."""

    @property
    def key(self) -> str: ...

    @property
    def meta(self) -> Any: ...  # suite, method, row, row_order, column, column_order, seed

    @property
    def spec(self) -> Any: ...  # a pydantic RunSpec


class Metrics(BaseModel):
    """End-of-run metrics (fractions); a method's or an older version's extras are kept."""

    model_config = ConfigDict(extra="allow")

    test_acc: float | None = None
    task_acc: dict[str, float | None] = Field(default_factory=dict)
    val_acc: float | None = None
    # where the validation peaked: selection's bookkeeping, not a column of a results frame
    best_val_acc: float | None = Field(None, json_schema_extra={"frame": False})
    best_val_epoch: int | None = Field(None, json_schema_extra={"frame": False})
    test_acc_at_best_val: float | None = None
    val_falls: int | None = None  # bench.engine.health.longest_fall
    val_fall_drop: float | None = None

    @classmethod
    def scalars(cls) -> tuple[str, ...]:
        """The one-number metrics, in field order (every field but ``task_acc``)."""
        return tuple(name for name in cls.model_fields if name != "task_acc")

    @classmethod
    def frame_columns(cls) -> tuple[str, ...]:
        """The scalars a results frame has a column of (:mod:`bench.report.loading`)."""
        return tuple(
            name
            for name in cls.scalars()
            if (cls.model_fields[name].json_schema_extra or {}).get("frame", True)
        )


class SplitSizes(BaseModel):
    """Images per split (None: no such split, e.g. no val carve, or a tuning run's test)."""

    model_config = ConfigDict(extra="allow")

    train: int
    val: int | None = None
    test: int | None = None


class TaskSplit(SplitSizes):
    """One teacher task as trained on: its classes (source ids, names) and images."""

    task: int
    classes: list[int]
    names: list[str]


class RunRecord(BaseModel):
    """What ``<results>/<suite>/runs/<key>/result.json`` holds."""

    model_config = ConfigDict(extra="allow")

    # a run's identity, in the order of a results frame's first columns
    IDS: ClassVar[tuple[str, ...]] = (
        "run_key",
        "suite",
        "row",
        "row_order",
        "column",
        "column_order",
        "seed",
        "method",
    )

    run_key: str
    status: Status
    row: str
    column: str
    seed: int
    suite: str | None = None
    method: str | None = None
    row_order: int | None = None
    column_order: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict)  # the resolved RunSpec, as JSON
    metrics: Metrics = Field(default_factory=Metrics)
    history: list[dict[str, Any]] = Field(default_factory=list)  # one entry per epoch
    # key, arch, cached, test_acc_own_classes, weights_sha256 (teacher.pt), pretrained_sha256
    teachers: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, Number | None] = Field(default_factory=dict)  # seconds
    error: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # set by the runner where they apply
    traceback: str | None = None  # failed runs
    device: str | None = None
    speed: dict[str, Any] | None = None  # bench.engine.speed, resolved on ``device``
    resumed_from_epoch: int | None = None
    pretrain: dict[str, Any] | None = None  # runs whose student starts from a stage
    # the split as trained on (bench.data.splits.SplitPlan): per teacher task its class ids
    # (source indices), names and images per split; and the union's images per split
    # (val / test None where absent). Older records have neither.
    tasks_resolved: list[TaskSplit] | None = None
    split_sizes: SplitSizes | None = None
    pretrained: dict[str, Any] | None = None  # the student's pretrained: file (bench.core.weights)
    # set after the run
    placement: dict[str, Any] | None = None  # bench.launch.placement: the process that ran it
    mlflow_run_id: str | None = None
    rebuilt_from_mlflow: bool | None = None

    @classmethod
    def for_run(cls, run: Planned, status: Status, **fields: Any) -> RunRecord:
        """The record of a planned run: its identity and display metadata, the resolved
        spec, the environment, and ``fields`` (metrics, history, teachers, timings, ...)."""
        return cls(
            **identity(run),
            status=status,
            spec=run.spec.model_dump(mode="json"),
            metrics=fields.pop("metrics", {}),
            history=fields.pop("history", []),
            teachers=fields.pop("teachers", []),
            timings=fields.pop("timings", {}),
            error=fields.pop("error", None),
            env=environment(),
            **fields,
        )

    _source: str | None = PrivateAttr(None)

    @classmethod
    def parse(cls, data: Any, source: str | None = None) -> RunRecord:
        """``data`` (what a ``result.json`` holds) as a record read from ``source`` (a
        file, an MLflow run); :class:`InvalidRecord` naming the bad fields if it is not
        one."""
        try:
            record = cls.model_validate(data)
        except ValidationError as err:
            raise InvalidRecord(describe_errors(err)) from None
        record._source = source
        return record

    @property
    def source(self) -> str | None:
        """Where the record was read from (None: built in this process)."""
        return self._source

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def dump(self) -> dict[str, Any]:
        """The record as its JSON file holds it: the keys it was built or read with."""
        return self.model_dump(exclude_unset=True)

    def checked(self) -> RunRecord:
        """The record re-validated as it is now (fields set after it was built included);
        :class:`InvalidRecord` if it is no longer a run record."""
        return RunRecord.parse(self.dump(), self.source)


def identity(run: Planned) -> dict[str, Any]:
    """A planned run's :data:`RunRecord.IDS` values (``run_key`` is its key)."""
    return {
        name: run.key if name == "run_key" else getattr(run.meta, name) for name in RunRecord.IDS
    }


def environment() -> dict[str, str]:
    """The versions a record was produced with, and the torch threads it ran at (a CPU
    run's numbers depend on them: reductions split differently)."""
    import torch  # loaded already wherever a run executes

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
    }


def validate_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` checked against :class:`RunRecord` and normalised (the same keys; values
    in their schema's types); raises :class:`InvalidRecord` naming the bad fields."""
    return RunRecord.parse(record).dump()


class InvalidRecord(ValueError):
    """A dict that is not a run record (its message names the bad fields)."""


def describe_errors(err: ValidationError) -> str:
    """``missing ['seed']; metrics.test_acc: Input should be a valid number``."""
    missing = [".".join(map(str, e["loc"])) for e in err.errors() if e["type"] == "missing"]
    other = [
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
        for e in err.errors()
        if e["type"] != "missing"
    ]
    return "; ".join(([f"missing {missing}"] if missing else []) + other)
