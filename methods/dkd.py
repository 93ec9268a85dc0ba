"""Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022; the CKA
paper's reference [16]) as a label-free amalgamation baseline:

    L = alpha TCKD + beta NCKD          (defaults alpha 1, beta 8, T 4: mdistiller's DKD)

With ``z^T`` the teachers' logits concatenated in teacher order (the union label space, as
Vanilla KD's soft target), the target class of a sample is ``t = argmax z^T`` (there are no
labels). With ``p = softmax(z / T)`` for the student (``p^S``) and the teachers (``p^T``):

* ``TCKD = T^2 mean_batch KL(b^T || b^S)``, the KL over the binary target / non-target
  distribution ``b = (p_t, 1 - p_t) = (p_t, sum_{i != t} p_i)``;
* ``NCKD = T^2 mean_batch KL(q^T || q^S)``, the KL over the non-target classes, with
  ``q_i = exp(z_i / T) / sum_{j != t} exp(z_j / T)`` for ``i != t``.

:func:`tckd` and :func:`nckd` follow mdistiller's ``dkd_loss`` (megvii-research/mdistiller,
``mdistiller/distillers/DKD.py``) line for line: the gt mask / other mask, ``torch.log`` of
the masked-and-summed student softmax, the target logit pushed out of the non-target
softmax by ``- 1000 * gt_mask``, summed KL divided by the batch size, times ``T^2``.
mdistiller's DKD adds a cross-entropy term on the labels and ramps DKD in over its first 20
epochs next to it; here there are no labels, so neither. Without that term the target class
is taught by ``alpha TCKD`` alone, next to ``beta NCKD``, which never looks at it: on the
quick digits suite (4 epochs, 3 seeds) the defaults reach ~62% where ``beta: 1`` (close to
Vanilla KD, since ``KD = TCKD + (1 - p^T_t) NCKD``) reaches ~96%.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.core.method import Batch, Method, register

Weight = Annotated[float, Field(ge=0)]


class DKDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: Weight = 1.0  # TCKD weight
    beta: Weight = 8.0  # NCKD weight
    T: float = Field(default=4.0, gt=0)

    @model_validator(mode="after")
    def _some_term_on(self) -> DKDParams:
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta are both 0; turn one on")
        return self


def _gt_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(logits).scatter_(1, target.reshape(-1, 1), 1).bool()


def _other_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(logits).scatter_(1, target.reshape(-1, 1), 0).bool()


def _cat_mask(p: torch.Tensor, gt: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """B x C probabilities -> B x 2: (target, non-target) mass."""
    return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], dim=1)


def tckd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, T: float
) -> torch.Tensor:
    """Target-class KD: ``T^2`` times the batch-mean KL of the binary target / non-target
    distributions, teacher to student (mdistiller's ``tckd_loss``)."""
    gt, other = _gt_mask(student_logits, target), _other_mask(student_logits, target)
    b_s = _cat_mask(F.softmax(student_logits / T, dim=1), gt, other)
    b_t = _cat_mask(F.softmax(teacher_logits / T, dim=1), gt, other)
    kl = F.kl_div(torch.log(b_s), b_t, reduction="sum")
    return kl * T**2 / target.shape[0]


def nckd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, T: float
) -> torch.Tensor:
    """Non-target-class KD: ``T^2`` times the batch-mean KL of the softmaxes over the
    non-target classes, teacher to student (mdistiller's ``nckd_loss``)."""
    gt = _gt_mask(student_logits, target)
    q_t = F.softmax(teacher_logits / T - 1000.0 * gt, dim=1)
    log_q_s = F.log_softmax(student_logits / T - 1000.0 * gt, dim=1)
    kl = F.kl_div(log_q_s, q_t, reduction="sum")
    return kl * T**2 / target.shape[0]


@register("dkd")
class DKD(Method):
    display = "DKD"
    Params = DKDParams
    term_weights = {"tckd": "alpha", "nckd": "beta"}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.params
        teacher_logits = torch.cat([o.logits for o in self.teacher_outputs(batch.x1)], dim=1)
        target = teacher_logits.argmax(dim=1)
        student_logits = self.student(batch.x1).logits
        terms: dict[str, torch.Tensor] = {}
        if p.alpha > 0:
            terms["tckd"] = tckd(student_logits, teacher_logits, target, p.T)
        if p.beta > 0:
            terms["nckd"] = nckd(student_logits, teacher_logits, target, p.T)
        return terms
