"""The shared body of the CKA family (docs/methods.md "Losses", "Method table"). Not a
plugin: ``cka_intra``, ``cka_inter`` and ``cka`` are subclasses of :class:`Amalgamation`
that only change the defaults of :class:`AmalgamationParams` and the display name (CFL has
its own loss file, :mod:`methods.cfl`, on the same common space and loss functions).

The objective is Eq. 12 plus CFL's reconstruction term::

    L = l_intra L_intra + l_inter L_inter + l_a L_align + l_d L_std + l_rec L_rec

* ``L_intra`` (Eq. 3): margin-based contrast between the projections ``z1 = h(E_S(x1))``,
  ``z2 = h(E_S(x2))`` of the student's two views (:func:`methods.losses.intra_contrast`);
  ``h`` is a two-layer MLP ``C_S -> C_S -> 128`` on the pooled feature, L2-normalised.
* ``L_inter`` (Eq. 5-6): contrast between the transport maps of the student's and each
  teacher's raw last-stage maps ``F_S``, ``F_t`` on ``x1``
  (:func:`methods.losses.inter_contrast`).
* ``L_align`` (Eq. 7-10): ``sum_t MMD^2(f_S, f_t)`` in the common space
  (:mod:`methods.common_space`, :func:`methods.losses.mmd2`).
* ``L_std`` (Eq. 11): KL between the concatenated teachers' and the student's soft targets
  (:func:`methods.losses.soft_target_kl`).
* ``L_rec``: per-teacher reconstruction error of the common-space decoders (CFL).

A term whose weight is 0 is neither computed nor are its forward passes run: no projection
head and no second view without ``L_intra``; no common-space block (not even built) when
``l_a = l_rec = 0``; no student adapter without ``L_align``; no decoders without ``L_rec``.
Teachers (frozen, under ``no_grad``) and every cross-model term see ``x1``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from torch import nn

from bench.core.method import Batch, Method, MethodContext, Term, Weight
from methods.common_space import build_common_space, cfl_terms
from methods.losses import inter_contrast, intra_contrast
from methods.readings import READINGS, expand_reading

PROJECTION_DIM = 128
TERMS = ("intra", "inter", "align", "std", "rec")
STUDENT_TERMS = ("intra", "inter", "align", "std")  # terms whose gradient reaches the student
TEACHER_TERMS = {"inter", "align", "std", "rec"}  # terms that need the teachers' outputs


class AmalgamationParams(BaseModel):
    """Params of the CKA family. Loss weights default to Eq. 12's
    (``l_intra = l_inter = l_d = 1``, ``l_a = 10``); every ambiguous reading of Eq. 3-12 is its
    own option, filled from the ``reading`` preset unless set (:mod:`methods.readings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reading: Literal[READINGS] = "default"  # the preset unset reading options come from
    lambda_intra: Weight = 1.0
    lambda_inter: Weight = 1.0
    lambda_align: Weight = 10.0
    lambda_std: Weight = 1.0
    lambda_rec: Weight = 0.0  # reading: CFL's term, absent from Eq. 12
    alpha: float = Field(default=0.4, ge=-1, le=1)  # Eq. 3 margin: a cosine, so in [-1, 1]
    distance: Literal["euclidean", "cosine", "mmd"] = "euclidean"  # d of Eq. 5
    tau: float = Field(default=1.0, gt=0)  # Eq. 5 temperature
    # readings (methods.readings.READING_OPTIONS); the defaults shown are the `default` preset's
    intra_negatives: Literal["sum", "mean"] = "sum"  # R over negatives in Eq. 3
    inter_negatives: Literal["sum", "mean"] = "sum"  # R over negatives in Eq. 6
    inter_normalize: bool = True  # L2-normalise rows before d in Eq. 5
    self_mask: bool = False  # drop j = i from Eq. 5's softmax
    kernels: Literal["sum", "mean"] = "mean"  # kernel combination (Eq. 9 convex = mean)
    align_normalize: bool = False  # L2-normalise common features before MMD
    rec_target: Literal["raw", "adapter"] = "adapter"  # mlp space's L_rec target
    std_reduction: Literal["mean", "sum"] = "sum"  # batch reduction of Eq. 11
    direction: Literal["forward", "reverse"] = "reverse"  # KL direction of Eq. 11
    T: float = Field(default=1.0, gt=0)  # Eq. 11 temperature
    # MMD bandwidths of L_align and of L_inter's `mmd` distance (None: the CFL reference's)
    sigmas: tuple[Annotated[float, Field(gt=0)], ...] | None = None
    common_space: Literal["cfl", "mlp"] = "mlp"

    @model_validator(mode="before")
    @classmethod
    def _expand_reading(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return expand_reading(data, cls.model_fields["reading"].default)
        return data

    @model_validator(mode="after")
    def _some_term_on(self) -> AmalgamationParams:
        if not any(getattr(self, f"lambda_{k}") > 0 for k in TERMS):
            raise ValueError("every loss weight is 0; turn at least one term on")
        if not any(getattr(self, f"lambda_{k}") > 0 for k in STUDENT_TERMS):
            raise ValueError(
                "only lambda_rec is on, and L_rec trains no student parameter (it reaches the "
                "common space's teacher side only); turn on one of "
                + ", ".join(f"lambda_{k}" for k in STUDENT_TERMS)
            )
        return self


def params_without(name: str, *terms: str) -> type[AmalgamationParams]:
    """:class:`AmalgamationParams` whose ``lambda_<term>`` default to 0 for ``terms``: the
    params of a row that is Eq. 12 without those terms (Table 2's CKA-Intra and CKA-Inter).
    Everything else, validation included, is the CKA family's."""
    off = {f"lambda_{t}": (Weight, 0.0) for t in terms}
    unknown = set(off) - set(AmalgamationParams.model_fields)
    if unknown:
        raise ValueError(f"params_without: no such weight {', '.join(sorted(unknown))}")
    return create_model(name, __base__=AmalgamationParams, **off)


class ProjectionHead(nn.Module):
    """``h``: two-layer MLP ``C_S -> C_S -> 128`` on the pooled feature, L2-normalised
    output (Sec. 4.1, SimCLR-style)."""

    def __init__(self, channels: int, out: int = PROJECTION_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, out)
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(feat), dim=1)


class Amalgamation(Method):
    """Student + (optional) projection head + (optional) common space; Eq. 12 terms."""

    Params = AmalgamationParams
    term_weights = {k: f"lambda_{k}" for k in TERMS}

    def __init__(self, ctx: MethodContext, params: AmalgamationParams) -> None:
        super().__init__(ctx, params)
        p, active = params, self.active_weights
        c_s = self.student.feature_channels
        self.head = ProjectionHead(c_s) if "intra" in active else None
        self.common = None
        if "align" in active or "rec" in active:
            c_t = [t.feature_channels for t in ctx.teachers]
            self.common = build_common_space(p.common_space, c_s, c_t, rec_target=p.rec_target)

    @property
    def needs_second_view(self) -> bool:
        return "intra" in self.active_weights

    def loss_terms(self, batch: Batch) -> dict[str, Term]:
        p, active = self.params, self.active_weights
        teachers = self.teacher_outputs(batch.x1) if active.keys() & TEACHER_TERMS else []
        s1 = self.student(batch.x1)

        def intra() -> torch.Tensor:
            if batch.x2 is None:
                raise ValueError(f"{self.name}: L_intra is on but the batch has no x2")
            z1, z2 = self.head(s1.feat), self.head(self.student(batch.x2).feat)
            return intra_contrast(z1, z2, alpha=p.alpha, negatives=p.intra_negatives)

        def inter() -> torch.Tensor:
            return inter_contrast(
                s1.fmap,
                [o.fmap for o in teachers],
                distance=p.distance,
                tau=p.tau,
                normalize=p.inter_normalize,
                negatives=p.inter_negatives,
                self_mask=p.self_mask,
                sigmas=p.sigmas,
                kernels=p.kernels,
            )

        return {"intra": intra, "inter": inter, **cfl_terms(self.common, s1, teachers, active, p)}
