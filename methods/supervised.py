"""Supervised cross-entropy on the true labels of the images it is given.

As a suite row (``supervised``): the student over the union labels, the only student row
that sees labels (an upper reference, not an amalgamation method). Built by
:meth:`Supervised.for_model`, the same loss trains one given model: a teacher on its
task-local labels, a pretrain backbone on its dataset (``bench.engine.teachers``,
``bench.engine.pretrain``).
"""

from __future__ import annotations

import torch.nn.functional as F

from bench.core.method import Batch, Method, MethodContext, NoParams, Term, register
from bench.core.models import Classifier


@register("supervised")
class Supervised(Method):
    display = "Supervised"
    uses_labels = True
    term_weights = {"ce": 1.0}

    @classmethod
    def for_model(cls, model: Classifier, channels: int, image_size: int) -> Supervised:
        """Cross-entropy training of ``model`` itself (no teachers; its own classes)."""
        ctx = MethodContext([], [model.fc.out_features], lambda: model, channels, image_size)
        return cls(ctx, NoParams())

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        return {"ce": lambda: F.cross_entropy(self.student(batch.x1).logits, batch.y)}
