"""Ensemble: argmax of the teachers' logits concatenated in teacher order (Table 2)."""

from __future__ import annotations

import torch

from bench.core.method import Method, register


@register("ensemble")
class Ensemble(Method):
    display = "Ensemble"
    trains = False
    builds_student = False

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([t(x).logits for t in self.teachers], dim=1)
