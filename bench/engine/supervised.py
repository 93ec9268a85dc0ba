"""The engine's own supervised trainer: cross-entropy on the true labels of one model.

Teachers (task-local labels, :mod:`bench.engine.teachers`) and pretrain stages (their
source classes, :mod:`bench.engine.pretrain`) are trained by :func:`train_model`, through
the one training loop (:func:`bench.engine.train.fit`), so the framework never imports a
method plugin to train them. The ``supervised`` suite row (``methods/supervised.py``)
is this same loss over the student of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from bench.core.config import OptimConfig
from bench.core.method import Batch, Method, MethodContext, NoParams, Term
from bench.core.models import Classifier
from bench.data.datasets import LabelledImages
from bench.engine.runtime import seed_everything

if TYPE_CHECKING:  # the loop is imported where a model trains: the plugin registry (and
    # so the dry-run) imports CrossEntropy through the supervised row, never the loop
    from bench.data.prepare import PreparedData
    from bench.engine.train import FitOptions, FitResult


class CrossEntropy(Method):
    """Cross-entropy of ``student``'s logits on the batch's labels (one term, ``ce``)."""

    name = "cross_entropy"
    uses_labels = True
    term_weights = {"ce": 1.0}

    @classmethod
    def for_model(cls, model: Classifier, channels: int, image_size: int) -> CrossEntropy:
        """Cross-entropy training of ``model`` itself (no teachers; its own classes)."""
        ctx = MethodContext([], [model.fc.out_features], lambda: model, channels, image_size)
        return cls(ctx, NoParams())

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        return {"ce": lambda: F.cross_entropy(self.student(batch.x1).logits, batch.y)}


def train_new(
    build: Callable[[], Classifier],
    seed: int,
    data: PreparedData,
    train: LabelledImages,
    val: LabelledImages | None,
    optim: OptimConfig,
    how: FitOptions,
    desc: str,
) -> tuple[Classifier, FitResult]:
    """Seed everything with ``seed``, build a model (``build``: its init draws from the
    seeded generators), move it to ``how.device`` and train it (:func:`train_model`):
    how a teacher and a pretrain stage are trained."""
    generator = seed_everything(seed)
    model = build().to(how.device)
    return model, train_model(model, data, train, val, optim, generator, how, desc)


def train_model(
    model: Classifier,
    data: PreparedData,
    train: LabelledImages,
    val: LabelledImages | None,
    optim: OptimConfig,
    generator: torch.Generator,
    how: FitOptions,
    desc: str,
) -> FitResult:
    """Train ``model`` (already on ``how.device``) with cross-entropy on ``train``'s
    labels (images of ``data``, through its views) for ``optim.epochs`` epochs; ``val``:
    per-epoch validation accuracy."""
    from bench.engine.train import fit

    trainer = CrossEntropy.for_model(model, data.channels, data.image_size)
    return fit(trainer, train, val, data.views, optim, generator, how, desc=desc)
