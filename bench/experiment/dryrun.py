"""What ``bench run --dry-run`` prints: every planned run (key, state, row, column, seed),
the teachers and pretrain stages it needs (cached or to train), finished results still
filed under legacy keys, each column's split (every teacher's classes, the images per
split, the validation carve) and each row's objective. Reads the results folder and the
loaders' label listings (``list_labels``: split lists and folder listings, never an
image); builds and writes nothing (the lazy exception: a ``tasks: natural`` loader that
cannot count its tasks is left out of the teacher list rather than loaded)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from pathlib import Path

from bench.core.artifacts import STAGE, TEACHER
from bench.core.config import DatasetConfig
from bench.core.errors import ConfigError
from bench.core.specs import PretrainSpec
from bench.core.store import RunStore
from bench.data.datasets import DATASETS, DatasetError, LabelListing, NotListed
from bench.data.splits import SplitPlan, plan_splits
from bench.experiment.migrate import find_legacy
from bench.experiment.plan import PlannedRun, counts_tasks, num_tasks
from bench.experiment.plugins import METHODS


def describe_plan(runs: list[PlannedRun], store: RunStore, results_root: Path) -> str:
    """The dry-run listing: every run (key, row, column, seed, state) and its teachers."""
    lines = [f"{'run key':16}  {'state':6}  {'column':14}  {'seed':>4}  row"]
    teachers: dict[str, str] = {}
    for run in runs:
        record = store.read(run.key)
        state = record.status if record else "to do"
        state = "done" if state == "finished" else state
        state = "tune" if run.meta.pending else state  # params known once its study ends
        lines.append(
            f"{run.key:16}  {state:6}  {run.meta.column:14}  {run.meta.seed:>4}  {run.meta.row}"
        )
        ds = run.spec.dataset_config()
        if counts_tasks(ds):
            for t in run.spec.teacher_specs(num_tasks(ds)):
                cached = TEACHER.entry(results_root, t.key).cached()
                teachers[t.key] = (
                    f"{t.key}  {'cached' if cached else 'to train':8}  {ds.column} "
                    f"T{t.task + 1} {t.arch}"
                )
    done = sum(1 for r in runs if store.is_finished(r.key))
    lines.append(f"{len(runs)} runs: {done} done, {len(runs) - done} to do")
    lines += describe_data(runs)
    lines += describe_objectives(runs)
    lines.append(f"teachers needed ({len(teachers)}):")
    lines += [f"  {v}" for v in teachers.values()]
    lines += describe_stages(((r.spec.pretrain, r.meta.column) for r in runs), results_root)
    moves = find_legacy(runs, results_root, count_natural=False)
    if moves:
        lines.append(
            f"under legacy keys: {moves.describe()}; `bench run` migrates them to "
            "location-free keys (no retraining)"
        )
    return "\n".join(lines)


def describe_data(runs: list[PlannedRun]) -> list[str]:
    """Per column: each teacher's classes (id:name) and images (train / val / test of its
    classes), the union, and the validation carve, laid out from the loader's labels by
    the arithmetic ``bench.data.prepare.prepare`` uses (:func:`bench.data.splits.plan_splits`)."""
    columns: dict[str, tuple[int, DatasetConfig]] = {}
    for run in runs:
        columns.setdefault(run.meta.column, (run.meta.column_order, run.spec.dataset_config()))
    if not columns:
        return []
    lines = ["splits (images per split: train / val / test; classes as id:name):"]
    listings: dict[str, LabelListing | str] = {}
    for column, (ci, ds) in columns.items():
        where = f"{ds.name}, root {ds.root}" if ds.root else ds.name
        lines.append(f"  {column} ({where}; tasks {_tasks_text(ds.tasks)}):")
        listing = _listing(ds, listings)
        if isinstance(listing, str):
            lines.append(f"    not listed: {listing}")
            continue
        try:
            plan = plan_splits(
                ds.tasks, listing.class_names, listing.train, listing.test,
                ds.val_fraction, ds.split_seed, listing.groups,
            )  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"datasets.{ci}.{exc}") from None
        lines += ["    " + line for line in split_lines(plan, ds, len(listing.class_names))]
        if listing.note:
            lines.append(f"    ({listing.note})")
    return lines


def _tasks_text(tasks) -> str:
    return tasks if isinstance(tasks, str) else json.dumps(tasks)


def _listing(ds: DatasetConfig, cache: dict[str, LabelListing | str]) -> LabelListing | str:
    """The loader's label listing, or one line saying why there is none (cached per
    dataset identity: columns that share a dataset list it once)."""
    key = json.dumps([ds.name, ds.root, ds.params], sort_keys=True, default=str)
    if key not in cache:
        loader = DATASETS.get(ds.name)
        try:
            cache[key] = loader.list_labels(ds.root, loader.parse(ds.params))
        except NotListed as exc:
            cache[key] = f"{exc}; counted when the run loads it"
        except (DatasetError, OSError) as exc:
            cache[key] = f"cannot list the labels: {exc}"
    return cache[key]


def split_lines(plan: SplitPlan, ds: DatasetConfig, num_source: int) -> list[str]:
    """The teacher, union and carve lines of one column's :class:`SplitPlan`."""
    lines = []
    for task in plan.tasks():
        classes = ", ".join(f"{i}:{n}" for i, n in zip(task["classes"], task["names"]))
        head = f"T{task['task'] + 1}  {len(task['classes'])} classes  {_sizes_text(task)}  "
        wrapped = textwrap.wrap(classes, width=max(40, 96 - len(head)), break_on_hyphens=False)
        lines.append(head + wrapped[0])
        lines += [" " * len(head) + w for w in wrapped[1:]]
    union = plan.layout.num_classes
    lines.append(f"union  {union} of {num_source} classes  {_sizes_text(plan.sizes())}")
    if plan.val is None:
        lines.append("val carve: none (val_fraction 0): no validation split")
        return lines
    per_class = (
        f"{plan.val.min()}"
        if plan.val.min() == plan.val.max()
        else (f"{plan.val.min()}-{plan.val.max()}")
    )
    lines.append(
        f"val carve: {int(plan.val.sum())} of the {plan.carved_from} train images of the "
        f"union to val (val_fraction {ds.val_fraction:g}, split_seed {ds.split_seed}: "
        f"round({ds.val_fraction:g} x n) per class, {per_class})"
    )
    if union <= 20:
        names = plan.layout.class_names
        per = ", ".join(f"{n}={v}" for n, v in zip(names, plan.val.tolist()))
        lines += textwrap.wrap(
            f"val per class: {per}", width=96, subsequent_indent="  ", break_on_hyphens=False
        )
    return lines


def _sizes_text(sizes: dict) -> str:
    return " / ".join("-" if sizes[k] is None else str(sizes[k]) for k in ("train", "val", "test"))


def describe_objectives(runs: list[PlannedRun]) -> list[str]:
    """Each training row's objective, ``CKA: 1·intra + 1·inter + 10·align + 1·std``, from
    the method's :meth:`~bench.core.method.Method.objective` (terms at weight 0 left out); a
    row whose params differ between columns (tuned rows) gets a line per column."""
    found: dict[str, dict[str, list[str]]] = {}
    for run in runs:
        cls = METHODS.get(run.spec.method)
        if not cls.trains:
            continue
        text = objective_text(cls, run.spec.params)
        if run.meta.pending:
            text += "  (placeholder: tuned params once its study ends)"
        columns = found.setdefault(run.meta.row, {}).setdefault(text, [])
        if run.meta.column not in columns:
            columns.append(run.meta.column)
    if not found:
        return []
    lines = ["objectives (weight·term; terms at weight 0 left out):"]
    for row, texts in found.items():
        for text, columns in texts.items():
            where = f" [{', '.join(columns)}]" if len(texts) > 1 else ""
            lines.append(f"  {row}{where}: {text}")
    return lines


def objective_text(cls, params: dict) -> str:
    """``1·intra + 10·align`` from the method's params (no model built)."""
    weights = cls.objective(cls.Params.model_validate(params))
    if not weights:
        return "no weighted terms declared (term_weights)"
    kept = [f"{w:g}·{term}" for term, w in weights.items() if w != 0]
    return " + ".join(kept) or "every term at weight 0"


def describe_stages(
    uses: Iterable[tuple[PretrainSpec | None, str]], results_root: Path
) -> list[str]:
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
        cached = STAGE.entry(results_root, key).cached()
        lines.append(
            f"  {key}  {'cached' if cached else 'to train':8}  {spec.describe()} "
            f"-> {', '.join(columns)}"
        )
    return lines
