"""Representation health of a student, per epoch: cheap figures that make collapse visible.

* ``feat_cos`` -- mean pairwise cosine similarity of the pooled features of a fixed
  validation batch (off-diagonal pairs). Near 1: every image maps to the same direction.
* ``eff_rank`` -- effective rank of that batch's feature matrix, ``exp(H(p))`` with
  ``p = sigma / sum(sigma)`` over its singular values (Roy & Vetterli 2007; RankMe, Garrido
  et al. 2023). 1: one direction left; at most ``min(batch, channels)``.
* :func:`falls_in_a_row` -- the longest run of epochs whose validation accuracy fell; a run
  with ``COLLAPSE_FALLS`` or more is flagged as collapsing in the tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PROBE_SIZE = 256  # images of the fixed validation batch
COLLAPSE_FALLS = 3  # epochs in a row with falling val accuracy that flag a run


def mean_pairwise_cosine(feats: torch.Tensor) -> float:
    """Mean of ``s(f_i, f_j)`` over ``i != j`` (``feats``: B x D, B >= 2)."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"feats must be B x D with B >= 2; got shape {tuple(feats.shape)}")
    f = F.normalize(feats.double(), dim=1)
    b = f.shape[0]
    total = (f.sum(dim=0) ** 2).sum() - (f * f).sum()  # sum_{i != j} f_i . f_j
    return (total / (b * (b - 1))).item()


def effective_rank(feats: torch.Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values of ``feats`` (B x D)."""
    if feats.dim() != 2:
        raise ValueError(f"feats must be B x D; got shape {tuple(feats.shape)}")
    s = torch.linalg.svdvals(feats.double())
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).item()


def falls_in_a_row(values: Sequence[float | None]) -> int:
    """The longest streak of consecutive decreases in ``values`` (None entries skipped)."""
    best = streak = 0
    prev = None
    for v in values:
        if v is None:
            continue
        streak = streak + 1 if prev is not None and v < prev else 0
        best = max(best, streak)
        prev = v
    return best


@torch.no_grad()
def representation_health(embed, probe: torch.Tensor) -> dict[str, float]:
    """``feat_cos`` and ``eff_rank`` of ``embed(probe)`` (pooled features, B x D); ``{}``
    when the method has no student features (``embed`` returns None)."""
    feats = embed(probe)
    if feats is None:
        return {}
    feats = feats.float().flatten(1)
    return {"feat_cos": mean_pairwise_cosine(feats), "eff_rank": effective_rank(feats)}
