"""Teachers: trained with labels on their own classes, cached by content key.

The cache lives at ``<results>/teachers/<key>/`` (``teacher.pt`` + ``meta.json``), so any
suite under the same results root that needs the same teacher (same dataset identity,
class subset, architecture, init, recipe and seed) loads it instead of training it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from bench.core.atomic import atomic_torch_save, atomic_write_json, read_json
from bench.core.claims import describe, release, try_claim
from bench.core.keys import file_sha256
from bench.core.models import Classifier, build_model_reported
from bench.core.specs import TeacherSpec
from bench.core.weights import announce
from bench.data.prepare import PreparedData
from bench.engine.evaluate import evaluate
from bench.engine.options import ExecOptions
from bench.engine.pretrain import get_backbone, load_backbone
from bench.engine.runtime import seed_everything
from bench.engine.train import fit
from methods.supervised import Supervised

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
    """Load the cached teacher for ``spec`` (under ``options.teacher_root``) or train and
    cache it; return it frozen on ``options.device`` with its metadata (``cached``:
    whether it was loaded). ``options.speed``: the suite's GPU speed switches for training
    it (``bench.engine.speed``; never part of its key). A teacher with a ``pretrain`` stage starts
    from its backbone (:func:`bench.engine.pretrain.get_backbone`), trained first if missing. A
    teacher another live process is training is waited for, never trained twice
    (``bench.core.claims``)."""
    options = options.resolved()
    folder = options.teacher_root / spec.key
    weights, meta_path = folder / "teacher.pt", folder / "meta.json"
    if not _cached_or_claimed(folder, spec):
        return _load_cached(spec, data, weights, meta_path, options.device)
    try:
        if read_json(meta_path) is not None and weights.is_file():  # finished meanwhile
            return _load_cached(spec, data, weights, meta_path, options.device)
        return _train(spec, data, weights, meta_path, options)
    finally:
        release(folder)


def _cached_or_claimed(folder: Path, spec: TeacherSpec, poll: float = 2.0) -> bool:
    """False when the teacher is cached; True once this process holds its claim (it
    trains it). While another live process trains it (a second ``bench run``, a tune
    worker), wait for it rather than train it twice."""
    waited = False
    while True:
        if read_json(folder / "meta.json") is not None and (folder / "teacher.pt").is_file():
            return False
        ok, owner = try_claim(folder)
        if ok:
            return True
        if not waited:
            log.warning(
                "teacher %s is being trained by %s: waiting for it", spec.key, describe(owner)
            )
            waited = True
        time.sleep(poll)


def _load_cached(spec, data, weights: Path, meta_path: Path, device):
    meta = read_json(meta_path)
    model, _ = _build(spec, data, pretrained=False)
    digest = file_sha256(weights)  # of the file loaded here (the run's record names it)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model = _freeze(model, device)
    if meta.get("test_acc_own_classes") is None and data.test is not None:
        # trained by a test-free tuning run: fill in its own-class test accuracy now
        meta["test_acc_own_classes"] = _own_test_acc(model, data, spec.task, device)
        atomic_write_json(meta_path, meta)
    return model, {**meta, "weights_sha256": digest, "cached": True}


def _train(spec, data, weights: Path, meta_path: Path, options: ExecOptions):
    device = options.device
    backbone = None
    if spec.pretrain is not None:  # first: training it must not move this teacher's seed
        backbone, _ = get_backbone(spec.pretrain, options)
    generator = seed_everything(spec.seed)
    model, report = _build(spec, data)
    if report is not None:
        announce(f"teacher T{spec.task + 1} ({spec.arch})", report)
    if backbone is not None:
        load_backbone(model, backbone)
    model = model.to(device)
    trainer = Supervised.for_model(model, data.channels, data.image_size)
    start = time.perf_counter()
    result = fit(
        trainer,
        data.task_train(spec.task),
        data.task_val(spec.task),
        data.views,
        spec.optim,
        device,
        generator,
        num_workers=options.num_workers,
        desc=f"teacher T{spec.task + 1}",
        progress=options.progress,
        speed=options.speed,
    )
    # None when the data was prepared without its test split (tuning never reads it)
    acc = _own_test_acc(model, data, spec.task, device) if data.test is not None else None
    meta = {
        "key": spec.key,
        "spec": spec.model_dump(mode="json"),
        "test_acc_own_classes": acc,
        "train_time": time.perf_counter() - start,
        "history": result.history,
        **({"pretrained": report.as_dict()} if report is not None else {}),
    }
    atomic_torch_save(weights, {k: v.cpu() for k, v in model.state_dict().items()})
    meta["weights_sha256"] = file_sha256(weights)
    atomic_write_json(meta_path, meta)  # written last: its presence marks a complete entry
    if acc is not None:
        log.info("teacher T%d (%s): %.2f%% on its own classes", spec.task + 1, spec.arch, acc * 100)
    return _freeze(model, device), {**meta, "cached": False}


def _own_test_acc(model: Classifier, data: PreparedData, task: int, device) -> float:
    """Top-1 of a teacher on the test images of its own classes (task-local labels)."""
    own_test = data.test.subset(torch.nonzero(_in_task(data.test.labels, data, task)).flatten())
    own_test.labels = own_test.labels - data.layout.task_slice(task).start
    model.eval()
    return evaluate(lambda x: model(x).logits, own_test, data.views, None, device)["acc"]


def _in_task(labels: torch.Tensor, data: PreparedData, task: int) -> torch.Tensor:
    sl = data.layout.task_slice(task)
    return (labels >= sl.start) & (labels < sl.stop)
