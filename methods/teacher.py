"""Teacher rows: teacher ``t`` alone, probabilities outside its classes set to 0 (Table 2)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.core.method import Method, register


class TeacherParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int = Field(default=0, ge=0)  # the suite planner makes one row per teacher


@register("teacher")
class TeacherRow(Method):
    display = "Teacher"
    Params = TeacherParams
    trains = False
    builds_student = False

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        t = self.params.index
        if t >= len(self.teachers):
            raise ValueError(f"teacher index {t}: there are {len(self.teachers)} teachers")
        logits = self.teachers[t](x).logits
        start = sum(self.task_sizes[:t])
        out = logits.new_full((len(x), sum(self.task_sizes)), float("-inf"))
        out[:, start : start + logits.shape[1]] = logits
        return out
