"""Representation health of a student, per epoch: cheap figures that make collapse visible.

* ``feat_cos`` -- mean pairwise cosine similarity of the pooled features of a fixed
  validation batch (off-diagonal pairs). Near 1: every image maps to the same direction.
* ``eff_rank`` -- effective rank of that batch's feature matrix, ``exp(H(p))`` with
  ``p = sigma / sum(sigma)`` over its singular values (Roy & Vetterli 2007; RankMe, Garrido
  et al. 2023). 1: one direction left; at most ``min(batch, channels)``.
* :func:`longest_fall` -- the longest run of epochs whose validation accuracy fell, and by how
  much; a run with ``COLLAPSE_FALLS`` or more falls in a row that lost at least
  ``COLLAPSE_DROP`` (a fraction: 5 points) over them is flagged as collapsing in the tables
  (noise-sized dips of a converged run are not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PROBE_SIZE = 256  # images of the fixed validation batch
COLLAPSE_FALLS = 3  # epochs in a row with falling val accuracy that flag a run ...
COLLAPSE_DROP = 0.05  # ... when they lost at least this much val accuracy in all


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


def longest_fall(values: Sequence[float | None]) -> tuple[int, float]:
    """The longest streak of consecutive decreases in ``values`` (None entries skipped) and
    the total drop over it (the largest, among streaks of that length)."""
    best, best_drop = 0, 0.0
    streak, start, prev = 0, None, None
    for v in values:
        if v is None:
            continue
        if prev is not None and v < prev:
            streak, start = streak + 1, start if streak else prev
            drop = start - v
            if (streak, drop) > (best, best_drop):
                best, best_drop = streak, drop
        else:
            streak = 0
        prev = v
    return best, best_drop


def is_collapsing(falls: float | None, drop: float | None) -> bool:
    """The table's flag: ``COLLAPSE_FALLS``+ falls in a row losing ``COLLAPSE_DROP``+."""
    return (falls or 0) >= COLLAPSE_FALLS and (drop or 0) >= COLLAPSE_DROP


@torch.no_grad()
def representation_health(embed, probe: torch.Tensor) -> dict[str, float]:
    """``feat_cos`` and ``eff_rank`` of ``embed(probe)`` (pooled features, B x D); ``{}``
    when the method has no student features (``embed`` returns None)."""
    feats = embed(probe)
    if feats is None:
        return {}
    feats = feats.float().flatten(1)
    return {"feat_cos": mean_pairwise_cosine(feats), "eff_rank": effective_rank(feats)}
