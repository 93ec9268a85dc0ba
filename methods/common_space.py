"""Common feature space blocks (docs/methods.md "Features used by the losses").

Both blocks map the student's and every teacher's last-stage feature map ``F_m`` into one
shared space where ``L_align`` (Eq. 7-10) compares them, and reconstruct each teacher's
input from its common feature (``L_rec``, following CFL so that the space cannot
collapse). Per-model parts are indexed by model: ``adapters[0]`` is the student's,
``adapters[1 + t]`` teacher ``t``'s. Channel counts may differ per teacher (heterogeneous
teachers); every part here is trainable, the teacher backbones are not.

* :class:`CFLSpace` (``cfl``) -- the CFL reference's ``CFL_ConvBlock`` (Luo et al., IJCAI
  2019; VainF/CommonFeatureLearning ``models/cfl.py``): 1x1 conv adapter without bias
  ``C_m -> 256`` + ReLU per model; a shared extractor of three residual blocks
  ``256 -> 128 -> 128 -> 128`` (no BatchNorm, as in the reference); per teacher a decoder
  (3x3 conv ``128 -> C_t``, ReLU, 1x1 conv ``C_t -> C_t``) reconstructing the raw ``F_t``.
  ``f_m`` is the extractor's output map, flattened per sample.
* :class:`MLPSpace` (``mlp``) -- the CKA paper's Sec. 4.2 wording: 1x1 conv adapter
  ``C_m -> 256`` + ReLU per model, global average pooling, one shared MLP
  ``256 -> 256 -> 128``; per teacher a linear decoder reconstructing a teacher target chosen
  by ``rec_target``: ``raw`` (``128 -> C_t``, the teacher's pooled raw ``F_t``: fixed data,
  so the space cannot collapse onto a point) or ``adapter`` (``128 -> 256``, the teacher's
  own pooled adapter output, detached: trainable, so both sides can shrink together --
  measured: sample cosine 0.77 -> 0.999). ``f_m`` is ``B x 128``.

Spatial sizes (choice). Student and teachers of different architectures can end at
different ``h x w`` (e.g. small_cnn 8x8 vs ResNet 4x4 at 32 px). In ``cfl`` every model's
map goes through its adapter, the shared extractor and (teachers) its decoder at its own
resolution, so each decoder reconstructs the teacher's raw ``F_t`` exactly as in the
reference; only for ``L_align`` are the extractor outputs adaptive-average-pooled to the
smallest ``h x w`` among the models (element-wise min) before flattening, so that ``f_S``
and ``f_t`` have the same dimension. When all sizes agree (the reference's setting) nothing
is pooled. ``mlp`` pools globally and has no spatial mismatch.

Reconstruction targets carry no gradient: ``F_t`` comes from the frozen teacher, and in
``mlp`` with ``rec_target: adapter`` the pooled adapter output is detached.

The extractor / shared MLP have no batch statistics, so all models whose maps share a shape
go through it as one concatenated batch (identical result, fewer, larger kernels).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.method import Term
from bench.core.models import ModelOutput
from methods.losses import mmd2, soft_target_kl

ADAPTER_CHANNELS = 256
COMMON_CHANNELS = 128


@dataclass
class CommonFeatures:
    """Output of a common-space block for one batch.

    ``student``: ``f_S`` (``B x D``) or None when not asked for; ``teachers``: ``f_t`` per
    teacher (``B x D``, same ``D`` as ``f_S``); ``rec``: ``L_rec`` = sum over teachers of
    the mean squared reconstruction error, or None when not asked for."""

    student: torch.Tensor | None
    teachers: list[torch.Tensor]
    rec: torch.Tensor | None


def _adapter(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, ADAPTER_CHANNELS, 1, bias=False), nn.ReLU(inplace=True))


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)


class ResBlock(nn.Module):
    """The reference's residual block: conv3x3-ReLU-conv3x3 + (1x1 projected) shortcut,
    ReLU; no BatchNorm."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class CommonSpace(nn.Module):
    """Base of the two blocks: per-model adapters, a shared part, per-teacher decoders."""

    def __init__(self, student_channels: int, teacher_channels: Sequence[int]) -> None:
        super().__init__()
        chans = [student_channels, *teacher_channels]
        self.adapters = nn.ModuleList(_adapter(c) for c in chans)
        self.num_teachers = len(teacher_channels)

    def forward(
        self,
        student_fmap: torch.Tensor | None,
        teacher_fmaps: Sequence[torch.Tensor],
        reconstruct: bool = True,
    ) -> CommonFeatures:
        """``f_S`` (if ``student_fmap`` is given), ``f_t`` for every teacher and, if
        ``reconstruct``, ``L_rec``. Teacher maps are the frozen teachers' ``F_t``; the
        student's adapter is not run when ``student_fmap`` is None."""
        fmaps = [student_fmap, *teacher_fmaps]
        adapted = [None if f is None else self.adapters[m](f) for m, f in enumerate(fmaps)]
        return self._common(adapted, list(teacher_fmaps), reconstruct)

    def _common(
        self,
        adapted: list[torch.Tensor | None],
        teacher_fmaps: list[torch.Tensor],
        reconstruct: bool,
    ) -> CommonFeatures:
        """The shared part and decoders on the adapter outputs (student first, or None)."""
        raise NotImplementedError

    @staticmethod
    def _shared(fn: nn.Module, xs: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``fn`` on every tensor of ``xs``; tensors of one shape (but the batch) go as one
        concatenated batch (the shared parts have no batch statistics: same result)."""
        out: list[torch.Tensor | None] = [None] * len(xs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(xs):
            if x is not None:
                groups.setdefault(tuple(x.shape[1:]), []).append(i)
        for idx in groups.values():
            y = fn(torch.cat([xs[i] for i in idx]))
            for i, part in zip(idx, y.split([xs[i].shape[0] for i in idx])):
                out[i] = part
        return out


class CFLSpace(CommonSpace):
    """``common_space: cfl`` -- the CFL reference block (see the module docstring)."""

    def __init__(self, student_channels: int, teacher_channels: Sequence[int]) -> None:
        super().__init__(student_channels, teacher_channels)
        h = COMMON_CHANNELS
        self.extractor = nn.Sequential(
            ResBlock(ADAPTER_CHANNELS, h), ResBlock(h, h), ResBlock(h, h)
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(_conv3x3(h, c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1, bias=False))
            for c in teacher_channels
        )

    def _common(self, adapted, teacher_fmaps, reconstruct) -> CommonFeatures:
        hidden = self._shared(self.extractor, adapted)
        present = [h for h in hidden if h is not None]
        size = (min(h.shape[2] for h in present), min(h.shape[3] for h in present))

        def flat(h: torch.Tensor | None) -> torch.Tensor | None:
            if h is not None and tuple(h.shape[2:]) != size:
                h = F.adaptive_avg_pool2d(h, size)
            return None if h is None else h.flatten(1)

        rec = None
        if reconstruct:
            rec = sum(
                F.mse_loss(dec(h), f_t)
                for dec, h, f_t in zip(self.decoders, hidden[1:], teacher_fmaps)
            )
        return CommonFeatures(flat(hidden[0]), [flat(h) for h in hidden[1:]], rec)


REC_TARGETS = ("raw", "adapter")


class MLPSpace(CommonSpace):
    """``common_space: mlp`` -- the CKA paper's block (see the module docstring)."""

    def __init__(
        self, student_channels: int, teacher_channels: Sequence[int], *, rec_target: str = "raw"
    ) -> None:
        super().__init__(student_channels, teacher_channels)
        if rec_target not in REC_TARGETS:
            raise ValueError(f"rec_target: unknown {rec_target!r} (known: raw, adapter)")
        a, h = ADAPTER_CHANNELS, COMMON_CHANNELS
        self.rec_target = rec_target
        self.mlp = nn.Sequential(nn.Linear(a, a), nn.ReLU(inplace=True), nn.Linear(a, h))
        outs = teacher_channels if rec_target == "raw" else [a] * len(teacher_channels)
        self.decoders = nn.ModuleList(nn.Linear(h, c) for c in outs)

    def _common(self, adapted, teacher_fmaps, reconstruct) -> CommonFeatures:
        pooled = [None if a is None else a.mean(dim=(2, 3)) for a in adapted]
        feats = self._shared(self.mlp, pooled)
        rec = None
        if reconstruct:
            if self.rec_target == "raw":
                targets = [f.mean(dim=(2, 3)) for f in teacher_fmaps]
            else:
                targets = [a.detach() for a in pooled[1:]]
            rec = sum(
                F.mse_loss(dec(f), target)
                for dec, f, target in zip(self.decoders, feats[1:], targets)
            )
        return CommonFeatures(feats[0], feats[1:], rec)


COMMON_SPACES: dict[str, type[CommonSpace]] = {"cfl": CFLSpace, "mlp": MLPSpace}


def build_common_space(
    kind: str, student_channels: int, teacher_channels: Sequence[int], *, rec_target: str = "raw"
) -> CommonSpace:
    """The block selected by ``common_space: cfl|mlp`` (``rec_target``: ``mlp`` only; ``cfl``
    always reconstructs the raw ``F_t``)."""
    if kind == "mlp":
        return MLPSpace(student_channels, list(teacher_channels), rec_target=rec_target)
    try:
        cls = COMMON_SPACES[kind]
    except KeyError:
        raise ValueError(f"common_space: unknown {kind!r} (known: cfl, mlp)") from None
    return cls(student_channels, list(teacher_channels))


def common_space_terms(
    space: CommonSpace,
    student_fmap: torch.Tensor,
    teacher_fmaps: Sequence[torch.Tensor],
    *,
    align: bool,
    rec: bool,
    sigmas: Sequence[float] | None,
    normalize: bool,
    kernels: str,
) -> dict[str, torch.Tensor]:
    """The common space's terms, each only when asked for: ``align`` = L_align (Eq. 7-10,
    ``sum_t MMD^2(f_S, f_t)`` in the common space, :func:`methods.losses.mmd2`) and ``rec``
    = L_rec (CFL's per-teacher reconstruction error). Shared by CFL and the CKA family."""
    common = space(student_fmap if align else None, teacher_fmaps, reconstruct=rec)
    terms: dict[str, torch.Tensor] = {}
    if align:
        terms["align"] = sum(
            mmd2(common.student, f_t, sigmas=sigmas, normalize=normalize, kernels=kernels)
            for f_t in common.teachers
        )
    if rec:
        terms["rec"] = common.rec
    return terms


def cfl_terms(
    space: CommonSpace | None,
    student: ModelOutput,
    teachers: Sequence[ModelOutput],
    active: Collection[str],
    params: Any,
) -> dict[str, Term]:
    """CFL's terms as :class:`bench.core.method.Method` term functions, shared by CFL and
    the CKA family: ``align`` and ``rec`` in ``space`` (one pass through it gives both; None
    when neither is on) and ``std``, :func:`methods.losses.soft_target_kl` towards the
    concatenated teachers. ``active``: the terms that are on (the pass computes only
    theirs); ``params``: the method's params, for ``sigmas``, ``align_normalize``,
    ``kernels``, ``T``, ``direction`` and ``std_reduction``."""
    p = params
    t_fmaps = [o.fmap for o in teachers]

    @cache
    def common() -> dict[str, torch.Tensor]:
        return common_space_terms(
            space,
            student.fmap,
            t_fmaps,
            align="align" in active,
            rec="rec" in active,
            sigmas=p.sigmas,
            normalize=p.align_normalize,
            kernels=p.kernels,
        )

    def std() -> torch.Tensor:
        t_logits = [o.logits for o in teachers]
        return soft_target_kl(
            student.logits, t_logits, T=p.T, direction=p.direction, reduction=p.std_reduction
        )

    return {"align": lambda: common()["align"], "rec": lambda: common()["rec"], "std": std}
