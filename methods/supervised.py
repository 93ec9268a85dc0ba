"""Supervised reference: the student trained with cross-entropy on the true union labels
(the only student row that sees labels; an upper reference, not an amalgamation method)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.base import Batch, Method, MethodContext, register


@register("supervised")
class Supervised(Method):
    display = "Supervised"
    uses_labels = True

    def __init__(self, ctx: MethodContext, params) -> None:
        super().__init__(ctx, params)
        self.student = ctx.build_student()

    def weights(self) -> dict[str, float]:
        return {"ce": 1.0}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(self.student(batch.x1).logits, batch.y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x).logits
