"""methods/losses.py against values worked out by hand, gradients, invariances and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from methods.losses import (
    DEFAULT_SIGMAS,
    inter_contrast,
    intra_contrast,
    mmd2,
    pairwise_mmd2,
    soft_target_kl,
    transport_map,
)

E = math.e
DISTANCES = ["euclidean", "cosine", "mmd"]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: float, tol: float = 1e-9) -> None:
    assert actual.shape == ()
    assert actual.item() == pytest.approx(expected, abs=tol, rel=tol)


def eye3() -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64)


def maps(b: int = 4, c: int = 3, hw: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, hw, hw, generator=g, dtype=torch.float64)


# Three samples in R^2 with cosines 0, 0.6, 0.8 between the unit vectors (1,0), (0,1), (.6,.8).
Z1 = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
Z2 = [[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]


# ---------------------------------------------------------------------------- intra_contrast


def test_intra_hand_value_sum_and_mean():
    # alpha = 0.4, hinge h(s) = relu(s - 0.4); negatives of anchor i: z1_j, z2_j (j != i).
    # i=0: z1_0=(1,0), pos z2_0=(.6,.8): 1-.6 = .4
    #      negs z1_1 0->0, z1_2 .6->.2, z2_1 0->0, z2_2 1->.6       sum .8, mean .2
    # i=1: z1_1=(0,1), pos z2_1=(0,1): 0
    #      negs z1_0 0->0, z1_2 .8->.4, z2_0 .8->.4, z2_2 0->0      sum .8, mean .2
    # i=2: z1_2=(.6,.8), pos z2_2=(1,0): .4
    #      negs z1_0 .6->.2, z1_1 .8->.4, z2_0 1->.6, z2_1 .8->.4   sum 1.6, mean .4
    # sum:  (1.2 + 0.8 + 2.0) / 3 = 4/3;  mean: (0.6 + 0.2 + 0.8) / 3 = 1.6/3
    z1, z2 = t(Z1), t(Z2)
    close(intra_contrast(z1, z2), 4 / 3)
    close(intra_contrast(z1, z2, negatives="mean"), 1.6 / 3)
    # Unnormalised inputs: s is a cosine, so scaling rows changes nothing.
    close(intra_contrast(3 * z1, z2 * t([[2.0], [0.5], [7.0]])), 4 / 3)


def test_intra_identical_orthogonal_views():
    # z1 == z2 == e1, e2, e3: positives s = 1 -> 0; all 4 negatives have s = 0.
    z = eye3()
    close(intra_contrast(z, z), 0.0)
    # alpha = -0.5: each negative contributes relu(0 + .5) = .5, 2(B-1) = 4 of them.
    close(intra_contrast(z, z, alpha=-0.5), 2.0)
    close(intra_contrast(z, z, alpha=-0.5, negatives="mean"), 0.5)


def test_intra_batch_of_two():
    # z1 = e1, e2; z2 = e2, e1. Each anchor: positive s = 0 -> 1; negatives
    # (other z1: s 0 -> 0, other z2: s 1 -> .6) sum .6, mean .3.
    z1, z2 = t([[1.0, 0.0], [0.0, 1.0]]), t([[0.0, 1.0], [1.0, 0.0]])
    close(intra_contrast(z1, z2), 1.6)
    close(intra_contrast(z1, z2, negatives="mean"), 1.3)


def test_intra_mean_is_sum_over_2_b_minus_1():
    z1, z2 = maps(5, 4, 1, seed=1).flatten(1), maps(5, 4, 1, seed=2).flatten(1)
    pos = intra_contrast(z1, z2, alpha=2.0)  # s <= 1 < alpha: only the positive term is left
    neg_sum = intra_contrast(z1, z2, alpha=-0.2) - pos
    neg_mean = intra_contrast(z1, z2, alpha=-0.2, negatives="mean") - pos
    assert neg_sum.item() > 0.1
    assert neg_mean.item() == pytest.approx(neg_sum.item() / (2 * 4))


def test_intra_permutation_invariant():
    z1, z2 = maps(6, 3, 1, seed=3).flatten(1), maps(6, 3, 1, seed=4).flatten(1)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    base = intra_contrast(z1, z2, alpha=0.0)
    assert torch.allclose(intra_contrast(z1[perm], z2[perm], alpha=0.0), base)
    # Permuting only one view breaks the positive pairs: the test can tell.
    assert not torch.allclose(intra_contrast(z1[perm], z2, alpha=0.0), base)


def test_intra_zero_vector_is_finite():
    # A zero vector has cosine 0 with everything.
    # z1 = 0, e2; z2 = e1, e2. i=0: pos 1 - 0 = 1, negs all s = 0 -> 0.  i=1: pos 0,
    # negs z1_0 (zero) 0, z2_0 = e1 0.  L = 1/2.
    z1 = t([[0.0, 0.0], [0.0, 1.0]]).requires_grad_()
    z2 = t([[1.0, 0.0], [0.0, 1.0]])
    loss = intra_contrast(z1, z2)
    close(loss, 0.5)
    loss.backward()
    assert torch.isfinite(z1.grad).all()


# ---------------------------------------------------------------------------- transport_map


def test_transport_map_orthogonal_hand_values():
    # e1, e2, e3: euclidean d = sqrt(2) off the diagonal; with tau = sqrt(2) a row is
    # softmax(0, -1, -1) = (e, 1, 1) / (e + 2). Cosine: d = 1 - 0 = 1, tau = 1: the same.
    a, b = E / (E + 2), 1 / (E + 2)
    expected = t([[a, b, b], [b, a, b], [b, b, a]])
    x = eye3()
    pi = transport_map(x, tau=math.sqrt(2))
    assert torch.allclose(pi, expected, atol=1e-9)
    assert torch.allclose(transport_map(5 * x, tau=math.sqrt(2)), expected, atol=1e-9)
    assert torch.allclose(transport_map(x, distance="cosine"), expected, atol=1e-9)
    # normalize=False on 2 e_i: d = 2 sqrt(2), so tau = 2 sqrt(2) gives the same map ...
    assert torch.allclose(
        transport_map(2 * x, tau=2 * math.sqrt(2), normalize=False), expected, atol=1e-9
    )
    # ... and tau = sqrt(2) a sharper one: softmax(0, -2, -2).
    a2 = 1 / (1 + 2 * math.exp(-2))
    assert transport_map(2 * x, tau=math.sqrt(2), normalize=False)[0, 0].item() == pytest.approx(a2)


def _k_orth(sigmas=DEFAULT_SIGMAS) -> float:
    # K between two orthogonal unit vectors: |a - b|^2 = 2, so sum_u exp(-1 / sigma_u^2);
    # for the default bandwidths only sigma = 1, 2 (e^-1 + e^-1/4) are above 1e-10.
    return sum(math.exp(-1 / s**2) for s in sigmas)


def test_transport_map_mmd_hand_values():
    # Sample i = {e_i, e_i} (2 spatial positions, C = 3). K(e_i, e_i) = 7 (seven kernels
    # at distance 0), K(e_i, e_j) = k. MMD^2(i, j) = 7 + 7 - 2k for i != j. tau = 14 - 2k.
    k = _k_orth()
    assert k == pytest.approx(math.exp(-1) + math.exp(-0.25))
    d = 14 - 2 * k
    sets = eye3()[:, None, :].expand(3, 2, 3)  # B x n x C
    pi = transport_map(sets, distance="mmd", tau=d)
    a, b = E / (E + 2), 1 / (E + 2)
    assert torch.allclose(pi, t([[a, b, b], [b, a, b], [b, b, a]]), atol=1e-9)
    # The same as a B x C x h x w map (h = 1, w = 2), scaled: spatial vectors are normalised.
    fmap = 4 * sets.transpose(1, 2).reshape(3, 3, 1, 2)
    assert torch.allclose(transport_map(fmap, distance="mmd", tau=d), pi, atol=1e-9)


def test_pairwise_mmd2_mixed_sets():
    # X0 = {e1, e2}, X1 = {e1, e1}, sigma = 1 only (K = 1 at distance 0, e^-1 at sqrt 2).
    # mean K(X0,X0) = (1 + 1 + 2/e)/4, mean K(X1,X1) = 1, mean K(X0,X1) = (2 + 2/e)/4
    # MMD^2 = (2 + 2/e)/4 + 1 - (4 + 4/e)/4 = (1 - 1/e) / 2
    sets = t([[[1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 0, 0]]])
    m = pairwise_mmd2(sets, sigmas=[1.0])
    expected = (1 - 1 / E) / 2
    assert torch.allclose(m, t([[0, expected], [expected, 0]]), atol=1e-12)


def test_pairwise_mmd2_float32_matches_float64():
    # sigma = 0.001 turns the ~1e-7 float32 rounding of |a|^2 + |a|^2 - 2 a.a into
    # exp(-0.1)-sized errors unless a vector's distance to itself is exactly 0.
    sets = maps(16, 16, 1, seed=24).reshape(16, 4, 4)
    m64 = pairwise_mmd2(sets)
    assert torch.allclose(pairwise_mmd2(sets.float()).double(), m64, atol=1e-4)


@pytest.mark.parametrize("distance", DISTANCES)
def test_transport_map_rows_sum_to_one_and_permute(distance):
    x = maps(5, 3, 2, seed=5)
    pi = transport_map(x, distance=distance, tau=0.3)
    assert pi.shape == (5, 5)
    assert torch.allclose(pi.sum(dim=1), torch.ones(5, dtype=torch.float64))
    assert (pi > 0).all()
    # Each sample is nearest to itself.
    assert (pi.argmax(dim=1) == torch.arange(5)).all()
    perm = torch.tensor([2, 4, 0, 3, 1])
    assert torch.allclose(transport_map(x[perm], distance=distance, tau=0.3), pi[perm][:, perm])


@pytest.mark.parametrize("distance", DISTANCES)
def test_transport_map_zero_sample_and_duplicates_finite(distance):
    x = maps(4, 3, 2, seed=6)
    x[1] = 0
    x[3] = x[2]  # zero distance off the diagonal
    x.requires_grad_()
    pi = transport_map(x, distance=distance)
    assert torch.isfinite(pi).all()
    (pi * torch.arange(16.0, dtype=torch.float64).reshape(4, 4)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_transport_map_euclidean_is_not_squared():
    # x = (0,0), (3,0), (0,4) unnormalised: d01 = 3, d02 = 4 (squared would be 9, 16).
    x = t([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    row = transport_map(x, normalize=False)[0]
    z = 1 + math.exp(-3) + math.exp(-4)
    assert torch.allclose(row, t([1 / z, math.exp(-3) / z, math.exp(-4) / z]), atol=1e-9)


# ---------------------------------------------------------------------------- inter_contrast


def test_inter_identical_maps_hand_value():
    # pi(P) = pi(Q) has rows r_k with a = e/(e+2) on the diagonal and b = 1/(e+2) elsewhere
    # (see the transport-map test). Positive: s = 1 -> 0. Negative s(r0, r1) =
    # (2ab + b^2) / (a^2 + 2b^2) = (2e + 1) / (e^2 + 2); two negatives per row.
    c = (2 * E + 1) / (E**2 + 2)
    p = eye3().reshape(3, 3, 1, 1)
    # Teacher with another shape (5 channels, 2 x 2) but flattened rows also orthogonal.
    q = torch.zeros(3, 5, 2, 2, dtype=torch.float64)
    q[0, 0, 0, 0], q[1, 4, 1, 1], q[2, 2, 0, 1] = 1.0, 2.0, 3.0
    tau = math.sqrt(2)
    close(inter_contrast(p, [q], tau=tau), 2 * c)
    close(inter_contrast(p, [q], tau=tau, negatives="mean"), c)
    close(inter_contrast(p, q, tau=tau), 2 * c)  # a single tensor is one teacher
    close(inter_contrast(p, [q, 7 * p], tau=tau), 4 * c)  # summed over teachers


def test_inter_uniform_teacher_hand_value():
    # Teacher: all samples identical -> every distance 0 -> pi(Q) = 1/3 everywhere (up to the
    # 1e-6 distance floor). Each row of pi(P) = (a, b, b) has the same similarity c with
    # every row of pi(Q): c = (a + 2b) / (sqrt(3) sqrt(a^2 + 2b^2)) = (e + 2) / sqrt(3 (e^2 + 2)).
    # sum: (1 - c) + 2c = 1 + c;  mean: (1 - c) + c = 1.
    c = (E + 2) / math.sqrt(3 * (E**2 + 2))
    p = eye3()
    q = torch.ones(3, 2, 2, 2, dtype=torch.float64)
    close(inter_contrast(p, [q], tau=math.sqrt(2)), 1 + c, tol=1e-5)
    close(inter_contrast(p, [q], tau=math.sqrt(2), negatives="mean"), 1.0, tol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_inter_invariances_and_teacher_shapes(distance):
    p = maps(5, 3, 2, seed=7)
    q1 = maps(5, 6, 2, seed=8)
    q2 = maps(5, 2, 3, seed=9)
    base = inter_contrast(p, [q1, q2], distance=distance, tau=0.5)
    assert torch.isfinite(base)
    assert torch.allclose(
        base,
        inter_contrast(p, [q1], distance=distance, tau=0.5)
        + inter_contrast(p, [q2], distance=distance, tau=0.5),
    )
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.allclose(
        inter_contrast(p[perm], [q1[perm], q2[perm]], distance=distance, tau=0.5), base
    )
    assert not torch.allclose(inter_contrast(p[perm], [q1, q2], distance=distance, tau=0.5), base)
    assert torch.allclose(
        inter_contrast(3 * p, [0.2 * q1, 5 * q2], distance=distance, tau=0.5), base
    )


def test_inter_unnormalised_depends_on_scale():
    p, q = maps(4, 3, 2, seed=10), maps(4, 3, 2, seed=11)
    a = inter_contrast(p, [q], normalize=False)
    assert not torch.allclose(a, inter_contrast(3 * p, [q], normalize=False))
    assert torch.allclose(
        inter_contrast(p, [q], normalize=True), inter_contrast(3 * p, [q], normalize=True)
    )


def test_inter_batch_of_two():
    # B = 2, orthogonal rows, tau = sqrt(2): pi rows (e, 1)/(e+1) and (1, e)/(e+1).
    # Identical teacher: positive 0, one negative s = 2e / (e^2 + 1).
    p = t([[1.0, 0.0], [0.0, 1.0]])
    close(inter_contrast(p, [p.flip(1)], tau=math.sqrt(2)), 2 * E / (E**2 + 1))


# ---------------------------------------------------------------------------- mmd2


def test_mmd2_hand_values():
    # X = {e1, e2}, Y = {e1, e3}; sigma = 1: K = 1 at distance 0, 1/e between orthogonal.
    # mean K(X,X) = mean K(Y,Y) = (2 + 2/e)/4; mean K(X,Y) = (1 + 3/e)/4
    # MMD^2 = (1 + 1/e) - (1 + 3/e)/2 = (1 - 1/e)/2
    x, y = t([[1, 0, 0], [0, 1, 0]]), t([[1, 0, 0], [0, 0, 1]])
    close(mmd2(x, y, sigmas=[1.0]), (1 - 1 / E) / 2)
    # Kernels are summed, not averaged: two copies of sigma = 1 double it.
    close(mmd2(x, y, sigmas=[1.0, 1.0]), 1 - 1 / E)
    # sigmas (1, 2): K = 2 at 0, k = e^-1 + e^-1/4 between orthogonal; MMD^2 = (2 - k)/2.
    close(mmd2(x, y, sigmas=[1, 2]), (2 - math.exp(-1) - math.exp(-0.25)) / 2)
    # Default bandwidths: K = 7 at 0, k = _k_orth(); MMD^2 = (7 - k)/2.
    close(mmd2(x, y), (7 - _k_orth()) / 2)
    # Samples are flattened: B x 1 x 3 x 1 gives the same.
    close(mmd2(x.reshape(2, 1, 3, 1), 5 * y.reshape(2, 1, 3, 1)), (7 - _k_orth()) / 2)


def test_mmd2_unnormalised_and_zero_vector():
    # X = {0}, Y = {e1}, sigma = 1, no normalisation: |0 - e1|^2 = 1, K = e^-1/2.
    # MMD^2 = 1 + 1 - 2 e^-1/2. With normalize, the zero vector stays 0: the same value.
    x, y = t([[0.0, 0.0]]), t([[1.0, 0.0]])
    expected = 2 - 2 * math.exp(-0.5)
    close(mmd2(x, y, sigmas=[1.0], normalize=False), expected)
    xr = x.clone().requires_grad_()
    loss = mmd2(xr, y, sigmas=[1.0])
    close(loss, expected)
    loss.backward()
    assert torch.isfinite(xr.grad).all()
    # Unnormalised scale matters: 3 e1 vs 0 -> 2 - 2 e^-9/2.
    close(mmd2(x, 3 * y, sigmas=[1.0], normalize=False), 2 - 2 * math.exp(-4.5))


def test_mmd2_identical_and_invariances():
    x, y = maps(6, 4, 1, seed=12).flatten(1), maps(6, 4, 1, seed=13).flatten(1)
    assert mmd2(x, x).item() == pytest.approx(0.0, abs=1e-9)
    assert mmd2(x, x[torch.randperm(6)]).item() == pytest.approx(0.0, abs=1e-9)
    base = mmd2(x, y, sigmas=[0.5, 1.0])
    assert base.item() > 1e-3
    # Sets: each side may be permuted independently; symmetric; scale-free when normalised.
    assert torch.allclose(mmd2(x[torch.randperm(6)], y[torch.randperm(6)], sigmas=[0.5, 1.0]), base)
    assert torch.allclose(mmd2(y, x, sigmas=[0.5, 1.0]), base)
    assert torch.allclose(mmd2(4 * x, 0.1 * y, sigmas=[0.5, 1.0]), base)


# ---------------------------------------------------------------------------- soft_target_kl


def test_soft_target_kl_hand_values():
    # Student logits (0, 0): p_S = (1/2, 1/2). Teachers (0) and (ln 3): p_T = (1/4, 3/4).
    # forward KL(p_T || p_S) = 1/4 ln(1/2) + 3/4 ln(3/2)
    # reverse KL(p_S || p_T) = 1/2 ln 2 + 1/2 ln(2/3)
    fwd = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    rev = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    s = t([[0.0, 0.0]])
    teachers = [t([[0.0]]), t([[math.log(3)]])]
    close(soft_target_kl(s, teachers), fwd)
    close(soft_target_kl(s, torch.cat(teachers, dim=1)), fwd)
    close(soft_target_kl(s, teachers, direction="reverse"), rev)
    # T = 2 with teacher logits (0, 2 ln 3): same p_T, p_S; the loss is scaled by T^2 = 4.
    close(soft_target_kl(s, t([[0.0, 2 * math.log(3)]]), T=2.0), 4 * fwd)


def test_soft_target_kl_teacher_order_and_batch_mean():
    # Student (0, ln 3) = teacher order 1, 2 -> KL 0; the other order gives p_T = (3/4, 1/4)
    # against p_S = (1/4, 3/4): KL = 3/4 ln 3 + 1/4 ln(1/3) = 1/2 ln 3.
    s = t([[0.0, math.log(3)]])
    a, b = t([[0.0]]), t([[math.log(3)]])
    close(soft_target_kl(s, [a, b]), 0.0)
    close(soft_target_kl(s, [b, a]), 0.5 * math.log(3))
    # Batch of two rows (KL 0 and 1/2 ln 3): the batch mean, not the sum or element mean.
    s2 = s.repeat(2, 1)
    close(
        soft_target_kl(s2, [t([[0.0], [math.log(3)]]), t([[math.log(3)], [0.0]])]),
        0.25 * math.log(3),
    )


def test_soft_target_kl_extreme_logits_finite():
    s = t([[1000.0, -1000.0, 0.0]]).requires_grad_()
    loss = soft_target_kl(s, t([[-1000.0, 1000.0, 0.0]]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(s.grad).all()


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("negatives", ["sum", "mean"])
def test_gradcheck_intra(negatives):
    z1, z2 = maps(4, 3, 1, seed=14).flatten(1), maps(4, 3, 1, seed=15).flatten(1)
    z1.requires_grad_()
    z2.requires_grad_()
    assert gradcheck(lambda a, b: intra_contrast(a, b, alpha=0.0, negatives=negatives), (z1, z2))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_transport_map(distance, normalize):
    x = maps(3, 2, 2, seed=16).requires_grad_()
    assert gradcheck(
        lambda a: transport_map(a, distance=distance, tau=0.7, normalize=normalize), (x,)
    )


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradcheck_inter(distance):
    # fast_mode: checks random projections of the Jacobian (full mode is slow here).
    p = maps(3, 2, 2, seed=17).requires_grad_()
    q = maps(3, 3, 1, seed=18).requires_grad_()
    f = lambda a, b: inter_contrast(a, [b], distance=distance, tau=0.5)  # noqa: E731
    assert gradcheck(f, (p, q), fast_mode=True)


def test_gradcheck_mmd2():
    x = maps(4, 3, 1, seed=19).flatten(1).requires_grad_()
    y = maps(4, 3, 1, seed=20).flatten(1).requires_grad_()
    assert gradcheck(lambda a, b: mmd2(a, b), (x, y))
    assert gradcheck(lambda a, b: mmd2(a, b, sigmas=[0.5, 2.0], normalize=False), (x, y))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_gradcheck_soft_target_kl(direction):
    s = maps(2, 3, 1, seed=21).flatten(1).requires_grad_()
    ta = maps(2, 1, 1, seed=22).flatten(1).requires_grad_()
    tb = maps(2, 2, 1, seed=23).flatten(1).requires_grad_()
    assert gradcheck(
        lambda a, b, c: soft_target_kl(a, [b, c], T=2.0, direction=direction), (s, ta, tb)
    )


# ---------------------------------------------------------------------------- errors


def _bad_calls():
    # (regex the message must match: the argument's name and, for options, its value; call)
    z, x = torch.randn(4, 3), torch.randn(4, 3, 2, 2)
    return [
        ("negatives.*'max'", lambda: intra_contrast(z, z, negatives="max")),
        (r"z1.*\(4, 3\).*\(3, 3\)", lambda: intra_contrast(z, z[:3])),
        ("z1.*at least 2", lambda: intra_contrast(z[:1], z[:1])),
        ("distance.*'manhattan'", lambda: transport_map(x, distance="manhattan")),
        ("tau.*0.0", lambda: transport_map(x, tau=0.0)),
        ("tau.*-1.0", lambda: transport_map(x, tau=-1.0)),
        (r"mmd.*\(4, 3\)", lambda: transport_map(z, distance="mmd")),
        ("negatives.*'all'", lambda: inter_contrast(x, [x], negatives="all")),
        ("distance.*'l1'", lambda: inter_contrast(x, [x], distance="l1")),
        ("tau.*0", lambda: inter_contrast(x, [x], tau=0)),
        (r"qs\[1\].*3.*4", lambda: inter_contrast(x, [x, x[:3]])),
        ("qs", lambda: inter_contrast(x, [])),
        ("y.*3.*4", lambda: mmd2(z, z[:3])),
        ("same per-sample size.*3.*12", lambda: mmd2(z, x)),
        ("sigmas.*0.0", lambda: mmd2(z, z, sigmas=[1.0, 0.0])),
        ("sigmas", lambda: mmd2(z, z, sigmas=[])),
        ("direction.*'both'", lambda: soft_target_kl(z, z, direction="both")),
        ("T.*0.0", lambda: soft_target_kl(z, z, T=0.0)),
        (r"teacher_logits\[1\].*3.*4", lambda: soft_target_kl(z, [z[:, :1], z[:3, 1:]])),
        ("teacher_logits.*1.*3", lambda: soft_target_kl(z, [z[:, :1]])),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_invalid_arguments_raise(case):
    pattern, call = _bad_calls()[case]
    with pytest.raises(ValueError, match=pattern):
        call()
