"""Loss functions of the CKA paper (arXiv 2307.14781), as fixed by docs/methods.md "Losses".

Pure functions of tensors: no state, no modules. Equation numbers are the paper's. Inputs are
positional, options keyword-only (``inter_contrast(p, qs, distance="mmd", tau=0.5)``).
Cosine similarity ``s(a, b) = a.b / (|a| |b|)`` is computed on ``F.normalize``-d rows, so a
zero vector has similarity 0 to everything (finite value and gradient, never NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DEFAULT_SIGMAS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1, 0.2, 1, 2)
DISTANCES = ("euclidean", "cosine", "mmd")
KERNELS = ("sum", "mean")  # combination of the Gaussian kernels: CFL reference / Eq. 9 convex
_EPS = 1e-12  # F.normalize's eps; also the floor under squared distances before sqrt


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_batch(name: str, x: torch.Tensor, batch: int) -> None:
    if x.shape[0] != batch:
        raise ValueError(f"{name} has batch size {x.shape[0]}, expected {batch}")


def _check_contrastive_batch(name: str, x: torch.Tensor) -> None:
    if x.dim() == 0 or x.shape[0] < 2:
        raise ValueError(f"{name} needs a batch of at least 2 samples; got shape {tuple(x.shape)}")


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``s(a_i, b_j)`` for all rows: (n x d), (m x d) -> n x m."""
    return F.normalize(a, dim=-1, eps=_EPS) @ F.normalize(b, dim=-1, eps=_EPS).transpose(-1, -2)


def _reduce(values: torch.Tensor, keep: torch.Tensor, negatives: str) -> torch.Tensor:
    """Per row, ``sum`` or ``mean`` of ``values`` where ``keep`` (same shape, bool) is true."""
    total = values.masked_fill(~keep, 0).sum(dim=-1)
    return total if negatives == "sum" else total / keep.sum(dim=-1)


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def intra_contrast(
    z1: torch.Tensor, z2: torch.Tensor, *, alpha: float = 0.4, negatives: str = "sum"
) -> torch.Tensor:
    """Margin-based intra-model contrast (Eq. 3).

    ``z1``, ``z2``: B x d embeddings of the two views (B >= 2). For anchor ``z1_i`` the
    positive is ``z2_i`` and the negatives are ``{z1_j, z2_j : j != i}`` (2(B-1) of them):

        L = mean_i [ (1 - s(z1_i, z2_i)) + R_j relu(s(z1_i, n_j) - alpha) ]

    with ``R`` = ``sum`` over the negatives (the paper's Eq. 3) or ``mean``.
    """
    _check_choice("negatives", negatives, ("sum", "mean"))
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be B x d with the same shape; got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    _check_contrastive_batch("z1", z1)
    s11 = _cosine_matrix(z1, z1)
    s12 = _cosine_matrix(z1, z2)
    positive = 1 - s12.diagonal()
    # B x 2B: anchor i against z1_j then z2_j; j == i is not a negative.
    hinge = F.relu(torch.cat([s11, s12], dim=1) - alpha)
    off = _off_diagonal(z1.shape[0], z1.device).repeat(1, 2)
    return (positive + _reduce(hinge, off, negatives)).mean()


def _pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """Plain L2 distances between rows of ``x`` (B x m) -> B x B.

    Squared distances come from ``|a|^2 + |b|^2 - 2 a.b`` (O(B^2) memory, not O(B^2 m)) and
    are floored at ``eps`` before the square root, so its gradient stays finite at 0."""
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2 * (x @ x.T)
    return d2.clamp_min(_EPS).sqrt()


def _check_sigmas(sigmas: Sequence[float] | None) -> tuple[float, ...]:
    sigmas = DEFAULT_SIGMAS if sigmas is None else tuple(sigmas)
    if not sigmas or any(s <= 0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty list of positive bandwidths; got {sigmas!r}")
    return sigmas


def pairwise_mmd2(
    sets: torch.Tensor,
    *,
    sigmas: Sequence[float] | None = None,
    normalize: bool = True,
    kernels: str = "sum",
) -> torch.Tensor:
    """Squared MMD (Eq. 7-10, see ``mmd2``) between every pair of sets: B x n x C -> B x B.

    Set ``i`` is ``sets[i]``, n vectors in R^C; with ``normalize`` each vector is
    L2-normalised. Vectorised: one (B n) x (B n) Gaussian kernel matrix per bandwidth, block
    means give ``M_ij = mean K(X_i, X_j)`` and ``MMD^2_ij = relu(M_ii + M_jj - 2 M_ij)``.
    Memory O((B n)^2) per bandwidth (B = 64, n = 49: 3136^2 entries). Squared distances between
    vectors are clamped at 0 and set to exactly 0 between a vector and itself. ``kernels``:
    ``sum`` of the Gaussian kernels (the CFL reference) or their ``mean`` (Eq. 9's convex
    combination with equal weights, ``1/m`` of the sum).
    """
    _check_choice("kernels", kernels, KERNELS)
    sigmas = _check_sigmas(sigmas)
    if sets.dim() != 3:
        raise ValueError(f"sets must be B x n x C; got shape {tuple(sets.shape)}")
    b, n, _ = sets.shape
    v = sets.reshape(b * n, -1)
    if normalize:
        v = F.normalize(v, dim=1, eps=_EPS)
    sq = (v * v).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2 * (v @ v.T)).clamp_min(0)
    d2 = d2.masked_fill(~_off_diagonal(b * n, v.device), 0)
    k = sum(torch.exp(-d2 / (2 * s**2)) for s in sigmas)
    if kernels == "mean":
        k = k / len(sigmas)
    m = k.reshape(b, n, b, n).mean(dim=(1, 3))
    diag = m.diagonal()
    return F.relu(diag[:, None] + diag[None, :] - 2 * m)


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigmas: Sequence[float] | None = None,
    normalize: bool = True,
    kernels: str = "sum",
) -> torch.Tensor:
    """Multi-kernel squared MMD between two batches (Eq. 7-10, as the CFL reference computes it).

    Each sample of ``x`` and ``y`` (B x ..., same B) is flattened and, with ``normalize``,
    L2-normalised; then

        K(a, b) = sum_u exp(-|a - b|^2 / (2 sigma_u^2))      (``kernels="sum"``, the reference)
        K(a, b) = mean_u exp(-|a - b|^2 / (2 sigma_u^2))     (``kernels="mean"``, Eq. 9 convex)
        MMD^2 = relu(mean K(X, X) + mean K(Y, Y) - 2 mean K(X, Y))   (biased V-statistic)

    ``sigmas`` default ``DEFAULT_SIGMAS`` (fixed, not median-scaled).
    """
    _check_batch("y", y, x.shape[0])
    xf, yf = x.flatten(1), y.flatten(1)
    if xf.shape != yf.shape:
        raise ValueError(
            f"x and y must have the same per-sample size; got {xf.shape[1]} and {yf.shape[1]}"
        )
    pairs = pairwise_mmd2(
        torch.stack([xf, yf]), sigmas=sigmas, normalize=normalize, kernels=kernels
    )
    return pairs[0, 1]


def _spatial_sets(x: torch.Tensor) -> torch.Tensor:
    """B x C x h x w -> B x (h w) x C; B x n x C passes through."""
    if x.dim() == 4:
        return x.flatten(2).transpose(1, 2)
    if x.dim() == 3:
        return x
    raise ValueError(
        f"distance='mmd' needs a B x C x h x w (or B x n x C) feature map; got shape {tuple(x.shape)}"
    )


def transport_map(
    x: torch.Tensor,
    *,
    distance: str = "euclidean",
    tau: float = 1.0,
    normalize: bool = True,
    self_mask: bool = False,
    sigmas: Sequence[float] | None = None,
    kernels: str = "sum",
) -> torch.Tensor:
    """Transport map of a batch (Eq. 5): ``pi_ij = softmax_j(-d(p_i, p_j) / tau)``, B x B.

    ``distance``:
      * ``euclidean`` — plain (not squared) L2 distance between flattened samples;
      * ``cosine`` — ``1 - s(p_i, p_j)`` between flattened samples;
      * ``mmd`` — ``mmd2`` (bandwidths ``sigmas``, kernel combination ``kernels``) between the
        samples' sets of spatial vectors: ``x`` must be B x C x h x w (h w vectors in R^C each)
        or already B x n x C.

    With ``normalize``, ``euclidean``/``cosine`` L2-normalise each flattened sample and ``mmd``
    L2-normalises each spatial vector (as ``mmd2`` does for its samples). ``d(p_i, p_i)`` is 0
    by definition (set exactly). Rows sum to 1.

    ``self_mask``: Eq. 5 sums over every ``j``, so row ``i`` keeps ``exp(0)`` for itself
    (``False``, as printed); ``True`` drops ``j = i`` from the softmax (``pi_ii = 0``), so a
    small ``tau`` or unnormalised features cannot give the whole row to the sample itself.
    """
    _check_choice("distance", distance, DISTANCES)
    if not tau > 0:
        raise ValueError(f"tau must be > 0; got {tau!r}")
    if distance == "mmd":
        d = pairwise_mmd2(_spatial_sets(x), sigmas=sigmas, normalize=normalize, kernels=kernels)
    else:
        flat = F.normalize(x.flatten(1), dim=1, eps=_EPS) if normalize else x.flatten(1)
        d = _pairwise_euclidean(flat) if distance == "euclidean" else 1 - _cosine_matrix(flat, flat)
    off = _off_diagonal(x.shape[0], x.device)
    logits = -d.masked_fill(~off, 0) / tau
    if self_mask:
        logits = logits.masked_fill(~off, float("-inf"))
    return torch.softmax(logits, dim=1)


def inter_contrast(
    p: torch.Tensor,
    qs: Sequence[torch.Tensor] | torch.Tensor,
    *,
    distance: str = "euclidean",
    tau: float = 1.0,
    normalize: bool = True,
    negatives: str = "sum",
    self_mask: bool = False,
    sigmas: Sequence[float] | None = None,
    kernels: str = "sum",
) -> torch.Tensor:
    """Distance-based inter-model contrast (Eq. 6).

    ``p``: student feature map (B x ...); ``qs``: teacher feature maps, each B x ... of any
    shape (their B x B transport maps are what is compared). With ``pi`` from
    ``transport_map`` (Eq. 5), row k of ``pi(P)`` and of ``pi(Q_t)`` are a positive pair, row
    k of ``pi(P)`` and rows ``l != k`` of ``pi(Q_t)`` negatives:

        L = sum_t mean_k [ (1 - s(pi(P)_k, pi(Q_t)_k)) + R_{l != k} s(pi(P)_k, pi(Q_t)_l) ]

    with ``R`` = ``sum`` (the paper's) or ``mean`` over the B - 1 negatives. ``self_mask``,
    ``sigmas`` and ``kernels`` are passed to :func:`transport_map`.
    """
    _check_choice("negatives", negatives, ("sum", "mean"))
    qs = [qs] if isinstance(qs, torch.Tensor) else list(qs)
    if not qs:
        raise ValueError("qs must hold at least one teacher feature map; got none")
    _check_contrastive_batch("p", p)
    for t, q in enumerate(qs):
        _check_batch(f"qs[{t}]", q, p.shape[0])

    def pi(x: torch.Tensor) -> torch.Tensor:
        return transport_map(
            x,
            distance=distance,
            tau=tau,
            normalize=normalize,
            self_mask=self_mask,
            sigmas=sigmas,
            kernels=kernels,
        )

    pi_p = pi(p)
    off = _off_diagonal(p.shape[0], p.device)
    total = p.new_zeros(())
    for q in qs:
        sim = _cosine_matrix(pi_p, pi(q))
        total = total + (1 - sim.diagonal() + _reduce(sim, off, negatives)).mean()
    return total


def soft_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor] | torch.Tensor,
    *,
    T: float = 1.0,
    direction: str = "forward",
    reduction: str = "mean",
) -> torch.Tensor:
    """Soft-target distillation (Eq. 11): a KL over the union label space, reduced over the
    batch by ``reduction``: ``mean`` (Hinton's) or ``sum`` (Eq. 11 sums over ``x in D_s``).

    ``teacher_logits``: one B x |Y| tensor, or a list of B x |Y^t| tensors concatenated in
    teacher order. ``p_T = softmax(concat / T)``, ``p_S = softmax(student_logits / T)``;
    ``forward`` (Hinton's, default): ``T^2 KL(p_T || p_S)``; ``reverse`` (as Eq. 11 is
    printed): ``T^2 KL(p_S || p_T)``. Summed over classes.
    """
    _check_choice("direction", direction, ("forward", "reverse"))
    _check_choice("reduction", reduction, ("mean", "sum"))
    if not T > 0:
        raise ValueError(f"T must be > 0; got {T!r}")
    if not isinstance(teacher_logits, torch.Tensor):
        teacher_logits = list(teacher_logits)
        if not teacher_logits:
            raise ValueError("teacher_logits must hold at least one tensor; got none")
        for t, lt in enumerate(teacher_logits):
            _check_batch(f"teacher_logits[{t}]", lt, student_logits.shape[0])
        teacher_logits = torch.cat(teacher_logits, dim=1)
    _check_batch("teacher_logits", teacher_logits, student_logits.shape[0])
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits have shape {tuple(teacher_logits.shape)} (concatenated), but "
            f"student_logits {tuple(student_logits.shape)}"
        )
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits / T, dim=1)
    how = "batchmean" if reduction == "mean" else "sum"
    if direction == "forward":
        kl = F.kl_div(log_p_s, log_p_t, reduction=how, log_target=True)
    else:
        kl = F.kl_div(log_p_t, log_p_s, reduction=how, log_target=True)
    return T * T * kl
