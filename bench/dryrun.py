"""What ``bench run --dry-run`` prints: every planned run (key, state, row, column, seed),
the teachers and pretrain stages it needs (cached or to train), and finished results
still filed under legacy keys. Reads the results folder; loads, builds and writes nothing
(the lazy exception: a ``tasks: natural`` loader that cannot count its tasks is left out
of the teacher list rather than loaded)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.migrate import find_legacy
from bench.plan import PlannedRun, counts_tasks, num_tasks
from bench.specs import PretrainSpec
from bench.store import RunStore


def describe_plan(runs: list[PlannedRun], store: RunStore, results_root: Path) -> str:
    """The dry-run listing: every run (key, row, column, seed, state) and its teachers."""
    lines = [f"{'run key':16}  {'state':6}  {'column':14}  {'seed':>4}  row"]
    teachers: dict[str, str] = {}
    for run in runs:
        record = store.read(run.key)
        state = record["status"] if record else "to do"
        state = "done" if state == "finished" else state
        state = "tune" if run.meta.pending else state  # params known once its study ends
        lines.append(
            f"{run.key:16}  {state:6}  {run.meta.column:14}  {run.meta.seed:>4}  {run.meta.row}"
        )
        ds = run.spec.dataset_config()
        if counts_tasks(ds):
            for t in run.spec.teacher_specs(num_tasks(ds)):
                cached = (results_root / "teachers" / t.key / "meta.json").is_file()
                teachers[t.key] = (
                    f"{t.key}  {'cached' if cached else 'to train':8}  {ds.column} "
                    f"T{t.task + 1} {t.arch}"
                )
    done = sum(1 for r in runs if store.is_finished(r.key))
    lines.append(f"{len(runs)} runs: {done} done, {len(runs) - done} to do")
    lines.append(f"teachers needed ({len(teachers)}):")
    lines += [f"  {v}" for v in teachers.values()]
    lines += describe_stages(
        ((r.spec.pretrain, r.meta.column) for r in runs), results_root / "pretrain"
    )
    moves = find_legacy(runs, results_root, count_natural=False)
    if moves:
        lines.append(
            f"under legacy keys: {moves.describe()}; `bench run` migrates them to "
            "location-free keys (no retraining)"
        )
    return "\n".join(lines)


def describe_stages(uses: Iterable[tuple[PretrainSpec | None, str]], cache_root: Path) -> list[str]:
    """Dry-run lines for the stages in ``uses`` ((stage, column) pairs): key, cached or to
    train, source, and the columns each initialises; nothing is loaded or built."""
    stages: dict[str, tuple[PretrainSpec, list[str]]] = {}
    for spec, column in uses:
        if spec is not None:
            columns = stages.setdefault(spec.key, (spec, []))[1]
            if column not in columns:
                columns.append(column)
    if not stages:
        return []
    lines = [f"pretrain stages needed ({len(stages)}):"]
    for key, (spec, columns) in stages.items():
        cached = (Path(cache_root) / key / "meta.json").is_file()
        lines.append(
            f"  {key}  {'cached' if cached else 'to train':8}  {spec.describe()} "
            f"-> {', '.join(columns)}"
        )
    return lines
