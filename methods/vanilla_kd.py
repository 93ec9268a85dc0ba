"""Vanilla KD: the student mimics the concatenated teachers' soft targets (Eq. 11)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.core.method import Batch, Method, Term, Weight, register
from methods.losses import soft_target_kl


class VanillaKDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lambda_std: Weight = 1.0
    T: float = Field(default=1.0, gt=0)
    direction: Literal["forward", "reverse"] = "forward"


@register("vanilla_kd")
class VanillaKD(Method):
    display = "Vanilla KD"
    Params = VanillaKDParams
    term_weights = {"std": "lambda_std"}

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        def std() -> torch.Tensor:
            teacher_logits = [o.logits for o in self.teacher_outputs(batch.x1)]
            student_logits = self.student(batch.x1).logits
            p = self.params
            return soft_target_kl(student_logits, teacher_logits, T=p.T, direction=p.direction)

        return {"std": std}
