"""Pretrain stage: a backbone trained supervised on a source dataset, cached by content key.

The paper fine-tunes ImageNet-pretrained ResNets; a suite's ``pretrain:`` stages stand in
for that at any scale. A stage is trained once per results root and cached at
``<results>/pretrain/<key>/`` (``backbone.pt`` + ``meta.json``, written last:
:mod:`bench.core.artifacts`), claimed and filled exactly like a teacher
(:mod:`bench.engine.cache`); a dataset entry's ``pretrain: <name>`` initialises that column's teachers and
students from its backbone (the classifier head is never carried over). The stage's spec
is part of every teacher and run key that uses it, so a changed recipe retrains them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from bench.core.artifacts import STAGE
from bench.core.config import DatasetConfig
from bench.core.errors import BenchError, ConfigError
from bench.core.models import Classifier, build_model, load_pretrained
from bench.core.specs import PretrainSpec
from bench.data.prepare import PreparedData, load_source, prepare
from bench.engine.cache import obtain
from bench.engine.evaluate import evaluate
from bench.engine.options import ExecOptions
from bench.engine.supervised import train_new

log = logging.getLogger(__name__)


def prepare_source(spec: PretrainSpec, with_test: bool = True) -> PreparedData:
    """The source images of ``spec``: its classes, labelled 0..k-1 in the order given."""
    ds = dict(spec.dataset)
    classes = ds.pop("classes")
    cfg = DatasetConfig.model_validate(ds)
    names = load_source(cfg).class_names
    if classes == "all":
        classes = list(range(len(names)))
    for c in classes:
        if c not in names and not (isinstance(c, int) and 0 <= c < len(names)):
            raise ConfigError(
                f"pretrain: dataset.classes: {c!r} is not a class of {cfg.name} "
                f"(indices 0..{len(names) - 1} or names {', '.join(names[:3])}, ...)"
            )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"pretrain: dataset.classes: a class appears twice in {classes}")
    return prepare(cfg, tasks=[classes], with_test=with_test)


def get_backbone(spec: PretrainSpec, options: ExecOptions) -> tuple[Path, dict[str, Any]]:
    """The cached backbone file of ``spec`` (``options.artifact(STAGE, key)``; trained on
    ``options.device`` and cached first if missing, by one process: another live one
    training it is waited for, :func:`bench.engine.cache.obtain`) and its metadata
    (``cached``: whether it was already there)."""
    options = options.resolved()
    entry = options.artifact(STAGE, spec.key)
    meta, cached = obtain(entry, f"pretrain stage {spec.key}", lambda: _train(spec, options))
    return entry.weights, {**meta, "cached": cached}


def _train(spec: PretrainSpec, options: ExecOptions):
    """The stage trained supervised on its source classes: (backbone weights, meta)."""
    data = prepare_source(spec)

    def build() -> Classifier:
        return build_model(
            spec.arch,
            num_classes=data.layout.num_classes,
            in_channels=data.channels,
            image_size=data.image_size,
            **spec.params,
        )

    start = time.perf_counter()
    model, result = train_new(
        build, spec.seed, data, data.train, data.val, spec.optim, options.fit_options(),
        f"pretrain {spec.key[:8]}",
    )  # fmt: skip
    acc = evaluate(lambda x: model(x).logits, data.test, data.views, None, options.device)["acc"]
    log.info("pretrain %s (%s): %.2f%% on its source test images", spec.key, spec.arch, acc * 100)
    meta = {
        "key": spec.key,
        "spec": spec.model_dump(mode="json"),
        "class_names": list(data.layout.class_names),
        "channels": data.channels,
        "image_size": data.image_size,
        "test_acc": acc,
        "train_time": time.perf_counter() - start,
        "history": result.history,
    }
    return {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}, meta


def load_backbone(model: Classifier, weights: Path) -> None:
    """Initialise ``model``'s backbone from a pretrain stage's file (through
    :func:`bench.core.models.load_pretrained`); its head stays as built. Every backbone tensor
    must fit: another width or input channel count is an error, never a partial init."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    own = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    unfit = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if unfit or len(state) != len(own):
        first = unfit[0] if unfit else next(k for k in state if k not in own)
        raise BenchError(f"pretrain: {weights}: backbone does not fit the model (at {first})")
    load_pretrained(model, str(weights))


def class_overlap(meta: dict[str, Any], dataset: dict[str, Any], class_names) -> list[str]:
    """Classes the backbone was trained on that the amalgamation also uses (same dataset
    name): recorded with every run, never refused."""
    if meta["spec"]["dataset"]["name"] != dataset["name"]:
        return []
    return [c for c in meta["class_names"] if c in set(class_names)]
