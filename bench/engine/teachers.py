"""Teachers: trained with labels on their own classes, cached by content key.

The cache lives at ``<results>/teachers/<key>/`` (``teacher.pt`` + ``meta.json``:
:mod:`bench.core.artifacts`), so any
suite under the same results root that needs the same teacher (same dataset identity,
class subset, architecture, init, recipe and seed) loads it instead of training it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import torch

from bench.core.artifacts import TEACHER
from bench.core.atomic import atomic_write_json
from bench.core.keys import file_sha256
from bench.core.models import Classifier, build_model_reported
from bench.core.specs import PlannedRun, TeacherSpec
from bench.core.weights import announce
from bench.data.prepare import PreparedData, prepare
from bench.engine.cache import obtain
from bench.engine.evaluate import evaluate
from bench.engine.options import ExecOptions
from bench.engine.pretrain import get_backbone, load_backbone
from bench.engine.supervised import train_new

log = logging.getLogger(__name__)


def _build(spec: TeacherSpec, data: PreparedData, pretrained: bool = True):
    """The teacher's model and the :class:`~bench.core.weights.LoadReport` of its
    ``pretrained`` file (None without one, or with ``pretrained=False``: a cached
    teacher's weights replace the init anyway)."""
    return build_model_reported(
        spec.arch,
        num_classes=data.layout.sizes[spec.task],
        in_channels=data.channels,
        image_size=data.image_size,
        pretrained=spec.pretrained if pretrained else None,
        **spec.params,
    )


def _freeze(model: Classifier, device: torch.device) -> Classifier:
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def get_teacher(
    spec: TeacherSpec, data: PreparedData, options: ExecOptions
) -> tuple[Classifier, dict[str, Any]]:
    """Load the cached teacher for ``spec`` (``options.artifact(TEACHER, key)``) or train
    and cache it (:func:`bench.engine.cache.obtain`: a teacher another live process is
    training is waited for, never trained twice); return it frozen on ``options.device``
    with its metadata (``cached``: whether it was loaded; ``weights_sha256``: of the file
    loaded). ``options.speed``: the suite's GPU speed switches for training it (never part
    of its key). A teacher with a ``pretrain`` stage starts from its backbone
    (:func:`bench.engine.pretrain.get_backbone`), trained first if missing."""
    options = options.resolved()
    entry = options.artifact(TEACHER, spec.key)
    meta, cached = obtain(entry, f"teacher {spec.key}", lambda: _train(spec, data, options))
    model, _ = _build(spec, data, pretrained=False)  # the cached weights replace the init
    digest = file_sha256(entry.weights)  # of the file loaded here (the run's record names it)
    model.load_state_dict(torch.load(entry.weights, map_location="cpu", weights_only=True))
    model = _freeze(model, options.device)
    if meta.get("test_acc_own_classes") is None and data.test is not None:
        # trained by a test-free tuning run: fill in its own-class test accuracy now
        meta["test_acc_own_classes"] = _own_test_acc(model, data, spec.task, options.device)
        atomic_write_json(entry.meta_path, meta)
    return model, {**meta, "weights_sha256": digest, "cached": cached}


def warm_teachers(runs: Iterable[PlannedRun], options: ExecOptions) -> None:
    """Train (or load) every teacher ``runs`` need, once each, here: before runs fan out
    to parallel workers (a suite's process and Ray launchers, a tuning study), so no two
    of them wait on one. ``options.with_test=False`` (tuning): no test split is loaded."""
    options = options.resolved()
    seen: set[str] = set()
    for run in runs:
        data = prepare(run.spec.dataset_config(), with_test=options.with_test)
        for tspec in run.spec.teacher_specs(len(data.layout.tasks)):
            if tspec.key not in seen:
                seen.add(tspec.key)
                get_teacher(tspec, data, options)


def _train(spec: TeacherSpec, data: PreparedData, options: ExecOptions):
    """The teacher trained with labels on its own classes: (weights, meta)."""
    backbone = None
    if spec.pretrain is not None:  # first: training it must not move this teacher's seed
        backbone, _ = get_backbone(spec.pretrain, options)
    reports = []

    def build() -> Classifier:
        model, report = _build(spec, data)
        if report is not None:
            announce(f"teacher T{spec.task + 1} ({spec.arch})", report)
            reports.append(report)
        if backbone is not None:
            load_backbone(model, backbone)
        return model

    start = time.perf_counter()
    model, result = train_new(
        build, spec.seed, data, data.task_train(spec.task), data.task_val(spec.task),
        spec.optim, options.fit_options(), f"teacher T{spec.task + 1}",
    )  # fmt: skip
    # None when the data was prepared without its test split (tuning never reads it)
    device = options.device
    acc = _own_test_acc(model, data, spec.task, device) if data.test is not None else None
    if acc is not None:
        log.info("teacher T%d (%s): %.2f%% on its own classes", spec.task + 1, spec.arch, acc * 100)
    meta = {
        "key": spec.key,
        "spec": spec.model_dump(mode="json"),
        "test_acc_own_classes": acc,
        "train_time": time.perf_counter() - start,
        "history": result.history,
        **({"pretrained": reports[0].as_dict()} if reports else {}),
    }
    return model.state_dict(), meta


def _own_test_acc(model: Classifier, data: PreparedData, task: int, device) -> float:
    """Top-1 of a teacher on the test images of its own classes (task-local labels)."""
    own_test = data.test.subset(torch.nonzero(_in_task(data.test.labels, data, task)).flatten())
    own_test.labels = own_test.labels - data.layout.task_slice(task).start
    model.eval()
    return evaluate(lambda x: model(x).logits, own_test, data.views, None, device)["acc"]


def _in_task(labels: torch.Tensor, data: PreparedData, task: int) -> torch.Tensor:
    sl = data.layout.task_slice(task)
    return (labels >= sl.start) & (labels < sl.stop)
