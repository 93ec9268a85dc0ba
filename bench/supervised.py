"""Supervised cross-entropy training of one classifier: how teachers and pretrain
backbones learn their classes (wrapped as a :class:`Method` so ``bench.train.fit`` runs it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.models import Classifier
from methods.base import Batch, Method


class SupervisedFit(Method):
    """Cross-entropy on the labels of the images it is given (task-local for a teacher)."""

    uses_labels = True

    def __init__(self, model: Classifier) -> None:
        torch.nn.Module.__init__(self)
        self.model, self.teachers = model, []

    def weights(self) -> dict[str, float]:
        return {"ce": 1.0}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(self.model(batch.x1).logits, batch.y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits
