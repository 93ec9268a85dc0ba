"""Teacher rows: teacher ``t`` alone, probabilities outside its classes set to 0 (Table 2)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.core.method import Method, register


class TeacherParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # None: one row per teacher task (TeacherRow.rows); a number: that teacher alone
    index: int | None = Field(default=None, ge=0)


@register("teacher")
class TeacherRow(Method):
    display = "Teacher"
    Params = TeacherParams
    trains = False
    builds_student = False

    @classmethod
    def rows(cls, params, label, n_tasks):
        """One row per teacher task ("Teacher 1", "Teacher 2", ...) unless ``index`` names
        one teacher."""
        if params.get("index") is not None:
            return [(params, label)]
        return [({**params, "index": t}, f"{label} {t + 1}") for t in range(n_tasks())]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        t = self.params.index
        if t is None:
            raise ValueError("teacher: index is unset (the suite planner sets one per row)")
        if t >= len(self.teachers):
            raise ValueError(f"teacher index {t}: there are {len(self.teachers)} teachers")
        logits = self.teachers[t](x).logits
        start = sum(self.task_sizes[:t])
        out = logits.new_full((len(x), sum(self.task_sizes)), float("-inf"))
        out[:, start : start + logits.shape[1]] = logits
        return out
