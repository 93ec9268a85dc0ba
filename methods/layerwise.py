"""Layer-wise amalgamation (Shen et al., "Amalgamating Knowledge towards Comprehensive
Classification", AAAI 2019; the CKA paper's reference [13]) as KamalEngine's
``LayerWiseAmalgamator`` does it (zju-vipa/KamalEngine,
``kamal/amalgamation/layerwise_amalgamation.py``):

    L = l_kd L_kd + l_amal L_amal + l_rec L_rec          (defaults 1, 1, 1: the reference's)

Per chosen stage ``k`` an amalgamation block (the reference's ``AmalBlock``, three 1x1
convs with bias) joins the student's map ``S_k`` (``C_S`` channels) and the teachers' maps
``T_k,t`` (``C_t`` channels each):

* ``F_k = enc_k(concat_t T_k,t)``: the teachers' maps encoded into the student's width;
* ``L_amal = sum_k MSE(fam_k(S_k), sg(F_k))``: the student's map, mapped by ``fam_k``, is
  pulled towards the encoded teachers (``sg``: stop-gradient, the reference's
  ``rep.detach()``: the encoder learns from the reconstruction only);
* ``L_rec = sum_k sum_t MSE(dec_k(F_k)_t, T_k,t)``: ``dec_k`` reconstructs each teacher's
  map from ``F_k`` (split back into the teachers' widths);
* ``L_kd``: soft-target KL towards the concatenated teachers
  (:func:`methods.losses.soft_target_kl`; the reference's ``kldiv`` is its T = 1, forward,
  batch mean).

The reference hooks every conv layer of same-architecture models; here the blocks join the
models' stages ``stages`` (``Classifier.forward_intermediates``; negative counts from the
end; default the last two), which exist for any student and teachers. Teachers of other
widths are concatenated as they are; where the maps differ in height and width, all of a
stage's maps are average-pooled to the smallest. The blocks train in their own optimiser
group, as the reference's separate Adam: the suite's lr and schedule, the reference's weight
decay 1e-4 (``block_weight_decay``).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from bench.core.method import Batch, Method, MethodContext, register
from methods.losses import soft_target_kl

Weight = Annotated[float, Field(ge=0)]


class LayerwiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lambda_kd: Weight = 1.0
    lambda_amal: Weight = 1.0
    lambda_rec: Weight = 1.0
    T: float = Field(default=1.0, gt=0)  # L_kd temperature
    stages: tuple[int, ...] = (-2, -1)  # the stages that get a block (negative: from the end)
    block_weight_decay: float = Field(default=1e-4, ge=0)

    @model_validator(mode="after")
    def _check(self) -> LayerwiseParams:
        if self.lambda_kd == 0 and self.lambda_amal == 0:
            raise ValueError(
                "lambda_kd and lambda_amal are both 0: L_rec alone trains no student "
                "parameter; turn one on"
            )
        if not self.stages:
            raise ValueError("stages is empty; name at least one stage")
        return self


class AmalBlock(nn.Module):
    """The reference's ``AmalBlock``: 1x1 encoder (teachers -> student width), decoder
    (back to the teachers' widths) and the student map's 1x1 map onto the encoding."""

    def __init__(self, c_s: int, c_t: list[int]) -> None:
        super().__init__()
        self.c_t = list(c_t)
        self.enc = nn.Conv2d(sum(c_t), c_s, 1)
        self.fam = nn.Conv2d(c_s, c_s, 1)
        self.dec = nn.Conv2d(c_s, sum(c_t), 1)

    def forward(
        self, f_s: torch.Tensor, f_t: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        rep = self.enc(torch.cat(f_t, dim=1))
        return rep, self.fam(f_s), torch.split(self.dec(rep), self.c_t, dim=1)


def pooled_to_smallest(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """The maps average-pooled to the smallest height and width among them."""
    size = tuple(min(m.shape[d] for m in maps) for d in (2, 3))
    return [m if tuple(m.shape[2:]) == size else F.adaptive_avg_pool2d(m, size) for m in maps]


@register("layerwise")
class Layerwise(Method):
    display = "Layer-wise KA"
    Params = LayerwiseParams
    term_weights = {"kd": "lambda_kd", "amal": "lambda_amal", "rec": "lambda_rec"}

    def __init__(self, ctx: MethodContext, params: LayerwiseParams) -> None:
        super().__init__(ctx, params)
        models = [("the student", self.student)]
        models += [(f"teacher {t}", m) for t, m in enumerate(ctx.teachers)]
        for stage in params.stages:
            for who, model in models:
                n = len(model.stage_channels)
                if not -n <= stage < n:
                    raise ValueError(f"layerwise: stage {stage}: {who} has {n} stages")
        for who, model in models:
            n = len(model.stage_channels)
            if len({s % n for s in params.stages}) != len(params.stages):
                raise ValueError(f"layerwise: stages {params.stages} repeat a stage of {who}")
        self.blocks = nn.ModuleList()
        if params.lambda_amal > 0 or params.lambda_rec > 0:
            self.blocks.extend(
                AmalBlock(
                    self.student.stage_channels[s], [t.stage_channels[s] for t in ctx.teachers]
                )
                for s in params.stages
            )

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        stages = list(p.stages)
        teachers = self.teacher_stages(batch.x1, stages)
        out, s_maps = self.student.forward_intermediates(batch.x1, stages)
        terms: dict[str, torch.Tensor] = {}
        if len(self.blocks):
            amal, rec = [], []
            for k, block in enumerate(self.blocks):
                f_s, *f_t = pooled_to_smallest([s_maps[k], *(maps[k] for _, maps in teachers)])
                rep, mapped, rebuilt = block(f_s, f_t)
                if p.lambda_amal > 0:
                    amal.append(F.mse_loss(mapped, rep.detach()))
                if p.lambda_rec > 0:
                    rec.append(sum(F.mse_loss(r, t) for r, t in zip(rebuilt, f_t)))
            if p.lambda_amal > 0:
                terms["amal"] = torch.stack(amal).sum()
            if p.lambda_rec > 0:
                terms["rec"] = torch.stack(rec).sum()
        if p.lambda_kd > 0:
            terms["kd"] = soft_target_kl(out.logits, [o.logits for o, _ in teachers], T=p.T)
        return terms

    def param_groups(self, lr: float) -> list[dict] | None:
        """The student at the suite's lr and decay; the blocks in their own group at the
        suite's lr and ``block_weight_decay`` (the reference's separate optimiser)."""
        if not len(self.blocks):
            return None
        return [
            {"params": [*self.student.parameters()]},
            {"params": [*self.blocks.parameters()], "weight_decay": self.params.block_weight_decay},
        ]
