"""Move finished results filed under legacy keys (with data locations) to today's keys.

Run, teacher and pretrain-stage keys once hashed the dataset's ``root``, ``archive`` and
``in_memory`` (:data:`bench.core.keys.LOCATION_ONLY`); now they do not. So that moving to the
new keys retrains nothing, ``bench run`` first looks for every planned run, teacher and
stage that is finished under its :func:`~bench.core.specs.legacy_key` and absent under its new
key, and moves it: its record (``result.json`` / ``meta.json``) is rewritten atomically
with the new key and a ``legacy_key`` field (MLflow still tags it by the old one), then
its folder is renamed (atomic). Interrupted between the two steps, the folder is still
found under its legacy key next time and moved then.

Run and teacher keys also once hashed each ``pretrained:`` file's path; now they hash
its content (:func:`bench.core.keys.weights_by_content`). A run or teacher that uses files is
looked for under two legacy keys, newest first: the location-free key with the paths
(:func:`~bench.core.specs.path_key`) and the one with locations and paths; only while every
file it names still exists at its path (whose content the moved result is then taken to
have been trained on: a file overwritten before the migration cannot be told apart).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.artifacts import META_NAME, STAGE, TEACHER
from bench.core.atomic import atomic_write_json, read_json
from bench.core.keys import weights_paths
from bench.core.specs import legacy_key, path_key
from bench.core.store import RunStore
from bench.experiment.plan import PlannedRun, counts_tasks, num_tasks
from bench.experiment.plugins import METHODS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    """One finished folder to move from ``legacy`` to ``key``."""

    src: Path
    dst: Path
    legacy: str
    key: str
    record: str  # the file that names the key: result.json or meta.json
    key_field: str  # run_key or key
    done_file: str | None = None  # weights that must exist beside it (teachers, stages)


@dataclass
class LegacyMoves:
    runs: list[Move] = field(default_factory=list)
    teachers: list[Move] = field(default_factory=list)
    stages: list[Move] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs or self.teachers or self.stages)

    def describe(self) -> str:
        text = f"{len(self.runs)} finished runs and {len(self.teachers)} teachers"
        return text + (f" (and {len(self.stages)} pretrain stages)" if self.stages else "")

    def renamed_keys(self) -> dict[str, str]:
        return {m.legacy: m.key for m in self.teachers + self.stages}


def legacy_run_key(run: PlannedRun) -> str:
    """The key earlier versions filed ``run`` under: the spec with data locations and,
    for a method whose params changed shape since, the params it dumped then
    (:meth:`bench.core.method.Method.legacy_params`)."""
    old_params = METHODS.get(run.spec.method).legacy_params(run.spec.params)
    if old_params is None:
        return legacy_key(run.spec)
    return legacy_key(run.spec.model_copy(update={"params": old_params}))


def find_legacy(
    runs: list[PlannedRun], results_root: Path, count_natural: bool = True
) -> LegacyMoves:
    """The moves that would file ``runs``' finished results (and their teachers and
    stages) under today's keys. ``count_natural=False``: teachers of ``tasks: natural``
    datasets whose loader cannot count its tasks without loading are left out."""
    root = Path(results_root)
    found = _Finder()
    for run in runs:
        store = RunStore(root / run.meta.suite)
        olds = _old_keys(run.spec, legacy_run_key(run))
        found.add(found.moves.runs, *(_run_move(store, old, run.key) for old in olds))
        stage = run.spec.pretrain
        if stage is not None:
            move = _folder_move(STAGE.root(root), legacy_key(stage), stage.key, STAGE.weights)
            found.add(found.moves.stages, move)
        ds = run.spec.dataset_config()
        if not count_natural and not counts_tasks(ds):
            continue
        for t in run.spec.teacher_specs(num_tasks(ds)):
            olds = _old_keys(t, legacy_key(t))
            found.add(
                found.moves.teachers,
                *(_folder_move(TEACHER.root(root), old, t.key, TEACHER.weights) for old in olds),
            )
    return found.moves


@dataclass
class _Finder:
    """The moves found so far; a legacy key is looked at once and a folder is the target
    of one move at most."""

    moves: LegacyMoves = field(default_factory=LegacyMoves)
    seen: set[str] = field(default_factory=set)
    targets: set[Path] = field(default_factory=set)

    def add(self, into: list[Move], *candidates: Move) -> None:
        """The first candidate (newest legacy key first) that is finished moves."""
        for move in candidates:
            if move.legacy == move.key or move.legacy in self.seen or move.dst in self.targets:
                continue
            self.seen.add(move.legacy)
            if _finished(move) and not move.dst.exists():
                self.targets.add(move.dst)
                into.append(move)
                return


def _old_keys(spec, legacy: str) -> list[str]:
    """The legacy keys of a run or teacher, newest first: the location-free key with the
    ``pretrained:`` paths while every file is still in place, then ``legacy``."""
    newer = [path_key(spec)] if _files_in_place(spec) else []
    return [*newer, legacy]


def _run_move(store: RunStore, old: str, key: str) -> Move:
    return Move(store.run_dir(old), store.run_dir(key), old, key, "result.json", "run_key")


def _folder_move(folder: Path, old: str, key: str, done_file: str) -> Move:
    """A teacher's or a stage's folder (``meta.json`` beside its weights)."""
    return Move(folder / old, folder / key, old, key, META_NAME, "key", done_file)


def _files_in_place(spec) -> bool:
    """Whether ``spec`` names ``pretrained:`` files and each is still at its path."""
    paths = weights_paths(spec.model_dump(mode="json"))
    return bool(paths) and all(Path(p).expanduser().is_file() for p in paths)


def _finished(move: Move) -> bool:
    record = read_json(move.src / move.record)
    if record is None:
        return False
    if move.done_file is not None:
        return (move.src / move.done_file).is_file()
    return record.get("status") == "finished"


def apply(moves: LegacyMoves) -> LegacyMoves:
    """Carry out ``moves`` (module docstring); return the ones done (a folder that
    appeared under its new key meanwhile is left where it is)."""
    renamed = moves.renamed_keys()
    done = LegacyMoves()
    for kind in ("stages", "teachers", "runs"):
        for move in getattr(moves, kind):
            if _move(move, renamed):
                getattr(done, kind).append(move)
    return done


def _move(move: Move, renamed: dict[str, str]) -> bool:
    path = move.src / move.record
    record = read_json(path)
    if record is None or move.dst.exists():
        return False
    record[move.key_field] = move.key
    record["legacy_key"] = move.legacy
    for teacher in record.get("teachers") or []:  # a run record names its teachers' keys
        if isinstance(teacher, dict) and teacher.get("key") in renamed:
            teacher["key"] = renamed[teacher["key"]]
    stage = record.get("pretrain")
    if isinstance(stage, dict) and stage.get("key") in renamed:
        stage["key"] = renamed[stage["key"]]
    atomic_write_json(path, record)
    move.dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(move.src, move.dst)
    except OSError as exc:  # e.g. the new folder appeared meanwhile: leave this one
        log.warning("could not move %s to %s: %s", move.src, move.dst, exc)
        return False
    return True


def migrate(runs: list[PlannedRun], results_root: Path) -> str | None:
    """Find and apply the moves for ``runs``; the one line to print, or None."""
    moves = find_legacy(runs, results_root)
    if not moves:
        return None
    done = apply(moves)
    return f"migrated {done.describe()} to location-free keys"
