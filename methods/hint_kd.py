"""Hint KD: FitNets' hint training (Romero et al., "FitNets: Hints for Thin Deep Nets",
ICLR 2015) as a multi-teacher amalgamation baseline:

    L = l_hint L_hint + l_std L_std

* ``L_hint``: per teacher ``t`` a regressor ``r_t`` (1x1 conv, FitNets' convolutional
  regressor) maps the student's intermediate stage ``stage`` to teacher ``t``'s same stage;
  ``L_hint = mean_t MSE(r_t(S_stage), T_t,stage)``. Where the two maps differ in size, both
  are average-pooled to the smaller height and width.
* ``L_std``: soft-target KD towards the concatenated teachers
  (:func:`methods.losses.soft_target_kl`).

FitNets trains the hint first and KD after; here both terms train together, as multi-term
amalgamation baselines do. ``stage`` counts the models' stages (small_cnn: 3, ResNets: 4;
``Classifier.forward_intermediates``); the default ``-2`` is the penultimate one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from bench.core.method import Batch, Method, MethodContext, Term, Weight, register
from methods.losses import soft_target_kl


class HintKDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lambda_hint: Weight = 1.0
    lambda_std: Weight = 1.0
    T: float = Field(default=1.0, gt=0)
    direction: Literal["forward", "reverse"] = "forward"
    stage: int = -2  # the student's and teachers' stage the hint joins (negative: from the end)

    @model_validator(mode="after")
    def _some_term_on(self) -> HintKDParams:
        if self.lambda_hint == 0 and self.lambda_std == 0:
            raise ValueError("lambda_hint and lambda_std are both 0; turn one on")
        return self


def hint_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """MSE between a regressed student map and a teacher map, both pooled to the smaller
    ``h x w`` where they differ."""
    size = tuple(min(a, b) for a, b in zip(student_map.shape[2:], teacher_map.shape[2:]))
    if tuple(student_map.shape[2:]) != size:
        student_map = F.adaptive_avg_pool2d(student_map, size)
    if tuple(teacher_map.shape[2:]) != size:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return F.mse_loss(student_map, teacher_map)


@register("hint_kd")
class HintKD(Method):
    display = "Hint KD"
    Params = HintKDParams
    term_weights = {"hint": "lambda_hint", "std": "lambda_std"}

    def __init__(self, ctx: MethodContext, params: HintKDParams) -> None:
        super().__init__(ctx, params)
        stage = params.stage
        models = [("the student", self.student)]
        models += [(f"teacher {t}", m) for t, m in enumerate(ctx.teachers)]
        for who, model in models:
            if not -len(model.stage_channels) <= stage < len(model.stage_channels):
                raise ValueError(
                    f"hint_kd: stage {stage}: {who} has {len(model.stage_channels)} stages"
                )
        c_s = self.student.stage_channels[stage]
        hinted = ctx.teachers if "hint" in self.active_weights else []  # none without L_hint
        self.regressors = nn.ModuleList(nn.Conv2d(c_s, t.stage_channels[stage], 1) for t in hinted)

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        p = self.params
        stage = [p.stage]
        teachers = self.teacher_stages(batch.x1, stage)
        out, (s_map,) = self.student.forward_intermediates(batch.x1, stage)

        def hint() -> torch.Tensor:
            pairs = zip(self.regressors, teachers)
            return torch.stack([hint_loss(r(s_map), t_maps[0]) for r, (_, t_maps) in pairs]).mean()

        def std() -> torch.Tensor:
            t_logits = [o.logits for o, _ in teachers]
            return soft_target_kl(out.logits, t_logits, T=p.T, direction=p.direction)

        return {"hint": hint, "std": std}
