"""CFL (Luo et al., "Knowledge Amalgamation from Heterogeneous Networks by Common Feature
Learning", IJCAI 2019) as a row of the CKA paper's tables (docs/methods.md "CFL", "Method table"):

    L = l_std L_std + l_align L_align + l_rec L_rec     (defaults 1, 10, 10)

* ``L_align``: ``sum_t MMD^2(f_S, f_t)`` between the student's and each teacher's features
  in the common space (:mod:`methods.common_space`, :func:`methods.losses.mmd2`);
* ``L_rec``: the common space's per-teacher reconstruction error of the raw teacher maps;
* ``L_std``: soft-target KL towards the concatenated teachers
  (:func:`methods.losses.soft_target_kl`).

That is the CFL reference's ``soft CE + 10 * (MMD + beta * MSE)`` with ``beta = 1`` on its
``CFL_ConvBlock`` (``common_space: cfl``, :class:`methods.common_space.CFLSpace`). The
defaults of the readings it shares with the CKA family are the reference code's
(``methods.readings.PRESETS["cfl-reference"]``: summed kernels on L2-normalised features,
Hinton's batch-mean forward KL).

``recipe``: ``harness`` (default) trains with the suite's optimiser and schedule like every
other row; ``reference`` is the CFL reference's own recipe (docs/methods.md "CFL"): Adam with
the student backbone at the suite's ``lr`` and the student's head and the common block at
10x, the lr divided by 10 every 15 epochs (StepLR). The reference ran 30 epochs at lr 1e-4:
set ``optim: {epochs: 30, lr: 1.0e-4}`` on the row for its whole setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.core.method import Batch, Method, MethodContext, Term, Weight, register
from methods.common_space import build_common_space, cfl_terms
from methods.readings import PRESETS

REFERENCE = PRESETS["cfl-reference"]
HEAD_LR_FACTOR = 10.0  # the reference's head and CFL block lr, relative to the backbone's
STEP_EPOCHS, STEP_GAMMA = 15, 0.1  # the reference's StepLR


class CFLParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lambda_align: Weight = 10.0
    lambda_std: Weight = 1.0
    lambda_rec: Weight = REFERENCE["lambda_rec"]
    T: float = Field(default=1.0, gt=0)  # L_std temperature
    direction: Literal["forward", "reverse"] = REFERENCE["direction"]  # KL direction of L_std
    std_reduction: Literal["mean", "sum"] = REFERENCE["std_reduction"]  # batch reduction
    kernels: Literal["sum", "mean"] = REFERENCE["kernels"]  # MMD kernel combination
    align_normalize: bool = REFERENCE["align_normalize"]  # L2-normalise before MMD
    # MMD bandwidths (None: the CFL reference's)
    sigmas: tuple[Annotated[float, Field(gt=0)], ...] | None = None
    common_space: Literal["cfl", "mlp"] = "cfl"  # mlp: the CKA paper's block, raw L_rec target
    recipe: Literal["harness", "reference"] = "harness"

    @model_validator(mode="after")
    def _student_term_on(self) -> CFLParams:
        if self.lambda_align == 0 and self.lambda_std == 0:
            raise ValueError(
                "lambda_align and lambda_std are both 0: L_rec alone trains no student "
                "parameter; turn on lambda_align or lambda_std"
            )
        return self


# What CFL's params dump held before CFL had its own loss: the CKA body's params it did
# not use, at the values of the ``cfl-reference`` reading (ka-bench af7d7b5).
LEGACY_UNUSED = {
    "reading": "cfl-reference",
    "lambda_intra": 0.0,
    "lambda_inter": 0.0,
    "alpha": 0.4,
    "distance": "euclidean",
    "tau": 1.0,
    "intra_negatives": "mean",
    "inter_negatives": "mean",
    "inter_normalize": True,
    "self_mask": True,
    "rec_target": "raw",
}


@register("cfl")
class CFL(Method):
    display = "CFL"
    Params = CFLParams
    term_weights = {"align": "lambda_align", "rec": "lambda_rec", "std": "lambda_std"}

    @classmethod
    def legacy_params(cls, params: dict[str, Any]) -> dict[str, Any] | None:
        """Earlier CFL runs dumped the CKA body's unused params too (and had no
        ``recipe``: only ``harness`` runs existed)."""
        if params.get("recipe", "harness") != "harness":
            return None
        rest = {k: v for k, v in params.items() if k != "recipe"}
        return {**LEGACY_UNUSED, **rest}

    def __init__(self, ctx: MethodContext, params: CFLParams) -> None:
        super().__init__(ctx, params)
        self.common = None
        if "align" in self.active_weights or "rec" in self.active_weights:
            c_t = [t.feature_channels for t in ctx.teachers]
            self.common = build_common_space(
                params.common_space, self.student.feature_channels, c_t, rec_target="raw"
            )
        self.steps_per_epoch = ctx.steps_per_epoch

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        teachers = self.teacher_outputs(batch.x1)
        s1 = self.student(batch.x1)
        return cfl_terms(self.common, s1, teachers, self.active_weights, self.params)

    def param_groups(self, lr: float) -> list[dict] | None:
        """``reference``: the student backbone at ``lr``, its head and the common block
        at 10x ``lr``."""
        if self.params.recipe == "harness":
            return None
        fast = [*self.student.fc.parameters()]
        if self.common is not None:
            fast += self.common.parameters()
        return [
            {"params": [*self.student.backbone.parameters()], "lr": lr},
            {"params": fast, "lr": HEAD_LR_FACTOR * lr},
        ]

    def lr_schedule(self, optimizer, total_steps: int):
        """``reference``: every group's lr times 0.1 every 15 epochs."""
        if self.params.recipe == "harness":
            return None
        if self.steps_per_epoch < 1:
            raise ValueError("cfl recipe 'reference': the context gives no steps_per_epoch")
        return torch.optim.lr_scheduler.StepLR(
            optimizer, STEP_EPOCHS * self.steps_per_epoch, STEP_GAMMA
        )
