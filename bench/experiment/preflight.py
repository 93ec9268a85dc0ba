"""Everything about a suite that can be checked before the first run starts.

:func:`bench.experiment.plan.expand` checks names and method params; this adds what needs a look at
the world, still without training, decoding or writing anything: dataset and model params
typed against their loader / factory signatures, dataset roots and archives listed for
their layout, ``pretrained:`` checkpoints loaded (``weights_only=True``), the results
directory writable, and the tracking store answering. Each failure is one
:class:`ConfigError` line naming the dotted key (and the file or value).
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bench.core.config import ModelConfig, SuiteConfig, format_validation_error
from bench.core.errors import ConfigError
from bench.core.models import MODELS
from bench.data.datasets import DATASETS, DatasetError
from bench.experiment.plan import grid_points, resolve_entry, teacher_configs

# model factory arguments the harness sets itself (never from ``params:``)
HARNESS_MODEL_ARGS = ("num_classes", "in_channels", "image_size")


@functools.cache
def params_model(factory: Callable[..., Any], skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A strict pydantic model of ``factory``'s keyword parameters (less ``skip``):
    unknown keys are refused unless it takes ``**kwargs``; unannotated ones are Any."""
    try:
        hints = typing.get_type_hints(factory, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: accept any value
        hints = {}
    fields: dict[str, Any] = {}
    extra = "forbid"
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is p.empty else p.default
        fields[name] = (hints.get(name, Any), default)
    name = getattr(factory, "__name__", "factory")
    config = ConfigDict(extra=extra, strict=True, arbitrary_types_allowed=True)
    return create_model(f"{name}_params", __config__=config, **fields)


def check_params(factory, params: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> None:
    try:
        params_model(factory, skip).model_validate(params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "", where)) from None


def check_dataset(name: str, root: str | None, params: dict[str, Any], where: str) -> None:
    """Params typed against the loader's model; the datasets it is made of (a merge's
    parts), each checked alike; then its layout check (a listing, no decode)."""
    loader = DATASETS.get(name)
    try:
        p = loader.validate(params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "", f"{where}.params")) from None
    for j, part in enumerate(loader.parts(p)):
        part_name = part.get("name")
        if part_name not in DATASETS:
            known = ", ".join(DATASETS.names())
            raise ConfigError(
                f"{where}.params.parts.{j}.name: unknown dataset {part_name!r} (known: {known})"
            )
        check_dataset(
            part_name, part.get("root"), part.get("params") or {}, f"{where}.params.parts.{j}"
        )
    key = "params.archive" if root is None and params.get("archive") else "root"
    try:
        loader.check_layout(root, p)
        warning = count_warning(name, root, params)
    except DatasetError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None
    if warning:
        print(f"warning: {where}.{key}: {warning}", file=sys.stderr)


def count_warning(name: str, root: str | None, params: dict[str, Any]) -> str | None:
    """A root of a dataset with an official manifest (:mod:`bench.data.datasets.manifest`) whose
    split lists hold other counts, in one line (a subset is said as one); else None. Reads
    the lists only (no image is opened)."""
    from bench.data.datasets.manifest import OFFICIAL, compare, official

    loader = DATASETS.get(name)
    if name not in OFFICIAL or not loader.lists_files():
        return None
    listing = loader.list_files(root, loader.parse(params))
    verdict, details = compare(listing.counts(), official(name, **params))
    if verdict == "complete":
        return None
    if verdict == "subset":
        return f"{name} at {listing.root}: {details} (a subset)"
    return f"{name} at {listing.root}: differs from the official distribution: {details}"


def check_checkpoint(
    path: str, where: str, arch: str | None = None, params: dict[str, Any] | None = None
) -> None:
    """A ``pretrained:`` file exists, loads as a state dict of tensors
    (``weights_only=True``) and, given the ``arch`` (and ``params``) it initialises,
    fills that model's backbone (:func:`bench.core.models.check_fit`: the head and the stem
    may differ; fewer backbone tensors are refused with the counts)."""
    from bench.core.errors import BenchError
    from bench.core.models import check_fit
    from bench.core.weights import read_state

    try:
        if arch is None:
            read_state(path)
        else:
            check_fit(arch, params or {}, path)
    except BenchError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_model(model: ModelConfig, where: str) -> None:
    check_params(MODELS.get(model.arch), model.params, f"{where}.params", HARNESS_MODEL_ARGS)
    if model.pretrained:
        check_checkpoint(model.pretrained, f"{where}.pretrained", model.arch, model.params)


def _student_configs(suite: SuiteConfig) -> Iterable[tuple[ModelConfig, str]]:
    """Every student model of the suite (grid points included) and its dotted key."""
    yield suite.student, "student"
    for i, entry in enumerate(suite.methods):
        where = f"methods.{i}"
        for point in grid_points(entry, where):
            _, student, _ = resolve_entry(entry, point, suite, where)
            if student != suite.student:
                yield student, f"{where}.student" if entry.student else f"{where}.grid"


def check_models(suite: SuiteConfig) -> None:
    fitted: set[tuple[str, str, str]] = set()
    for key, t in teacher_configs(suite):
        pairs = t.archs_and_params()
        for i, (arch, params) in enumerate(pairs):
            where = f"{key}.params" if len(pairs) == 1 else f"{key}.params (arch {i}: {arch})"
            check_params(MODELS.get(arch), params, where, HARNESS_MODEL_ARGS)
        several = isinstance(t.pretrained, list)
        lists = [v for v in (t.arch, t.params, t.pretrained) if isinstance(v, list)]
        for i, (arch, params, path) in enumerate(t.per_task(max(map(len, lists), default=1))):
            if path and (path, arch, repr(params)) not in fitted:  # a big file is read once
                fitted.add((path, arch, repr(params)))
                check_checkpoint(
                    path,
                    f"{key}.pretrained" + (f".{i}" * (several and len(t.pretrained) > 1)),
                    arch,
                    params,
                )
    seen: set[str] = set()
    for model, where in _student_configs(suite):
        key = model.model_dump_json()
        if key not in seen:
            seen.add(key)
            check_model(model, where)


def check_writable(results_root: Path) -> None:
    """The results root (or the nearest folder that exists above it) accepts new files."""
    path = Path(results_root).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--results: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--results: {probe} is not writable")


def check_tracking(uri: str) -> None:
    """The store answers: a SQLite file opens read-only (or its folder is writable), a
    server answers ``/health``. Nothing is created here."""
    from bench.tracking import probe as probe_store
    from bench.tracking import sqlite_path

    db = sqlite_path(uri)
    if db is not None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
                    con.execute("select count(*) from sqlite_master").fetchone()
            except sqlite3.Error as exc:
                raise ConfigError(
                    f"tracking: {uri}: not a usable SQLite database ({exc}); "
                    "fix it or run with --no-mlflow"
                ) from None
        else:
            try:
                check_writable(db.parent)
            except ConfigError:
                raise ConfigError(
                    f"tracking: {uri}: cannot create the database there; use --no-mlflow"
                ) from None
        return
    try:
        probe_store(uri)
    except OSError as exc:
        raise ConfigError(f"tracking: {uri}: {exc} (or run with --no-mlflow)") from None


def check_suite(
    suite: SuiteConfig,
    results_root: Path | None = None,
    tracking_uri: str | None = None,
) -> None:
    """All the pre-run checks of a suite whose names :func:`bench.experiment.plan.expand` accepted.
    ``results_root``: also check it is writable; ``tracking_uri``: also probe the store."""
    for i, ds in enumerate(suite.datasets):
        check_dataset(ds.name, ds.root, ds.params, f"datasets.{i}")
    for name, stage in suite.pretrain.items():
        source = stage.dataset
        check_dataset(source.name, source.root, source.params, f"pretrain.{name}.dataset")
        check_params(
            MODELS.get(stage.arch), stage.params, f"pretrain.{name}.params", HARNESS_MODEL_ARGS
        )
    check_models(suite)
    if results_root is not None:
        check_writable(results_root)
    if tracking_uri is not None:
        check_tracking(tracking_uri)
