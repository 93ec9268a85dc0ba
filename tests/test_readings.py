"""The open readings of Eq. 3-12 as options (methods.readings), against hand-computed values,
and the presets that fill them."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from methods import METHODS
from methods.amalgamation import AmalgamationParams
from methods.losses import inter_contrast, mmd2, soft_target_kl, transport_map
from methods.readings import PRESETS, READING_OPTIONS

E = math.e
EYE3 = torch.eye(3, dtype=torch.float64)


def close(value: torch.Tensor, expected: float, tol: float = 1e-9) -> None:
    assert value.item() == pytest.approx(expected, abs=tol)


# ------------------------------------------------------------------------------- kernels


def test_kernels_mean_is_the_convex_combination():
    # x = (e1, e2), y = (e3, e1) normalised; sigmas 1 and 2. Summed kernels (CFL code) give
    # (2 - e^-1 - e^-0.25) / 2 (tests/test_losses.py); Eq. 9's equal convex weights halve it.
    x, y = EYE3[[0, 1]], EYE3[[2, 0]]
    summed = (2 - math.exp(-1) - math.exp(-0.25)) / 2
    close(mmd2(x, y, sigmas=[1, 2], kernels="sum"), summed)
    close(mmd2(x, y, sigmas=[1, 2], kernels="mean"), summed / 2)
    # a single bandwidth: both readings agree
    close(mmd2(x, y, sigmas=[1.0], kernels="mean"), mmd2(x, y, sigmas=[1.0]).item())
    with pytest.raises(ValueError, match="kernels"):
        mmd2(x, y, kernels="max")


# ---------------------------------------------------------------------- transport map self


def test_self_mask_drops_the_self_entry():
    # orthogonal unit rows: d(i, j) = sqrt(2) for i != j, d(i, i) = 0.
    a = math.exp(-math.sqrt(2))
    kept = transport_map(EYE3)  # as printed: row i keeps exp(0) for itself
    close(kept[0, 0], 1 / (1 + 2 * a))
    close(kept[0, 1], a / (1 + 2 * a))
    masked = transport_map(EYE3, self_mask=True)
    expected = torch.full((3, 3), 0.5, dtype=torch.float64).fill_diagonal_(0)
    torch.testing.assert_close(masked, expected)


def test_inter_contrast_with_self_mask_hand_values():
    # pi(P) = pi(Q) = [[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]: positives s = 1 (loss 0), each
    # of the 2 negatives per row has cosine 0.25 / 0.5 = 0.5.
    close(inter_contrast(EYE3, [EYE3], self_mask=True, negatives="sum"), 1.0)
    close(inter_contrast(EYE3, [EYE3], self_mask=True, negatives="mean"), 0.5)


def test_unnormalised_rows_with_self_entry_make_l_inter_flat():
    # The literal Eq. 5 on raw features: distances are large, so every row is one-hot on
    # itself, pi = I, and L_inter is a constant with no gradient (a silent no-op term).
    torch.manual_seed(0)
    p = (10 * torch.randn(6, 32, dtype=torch.float64)).requires_grad_()
    q = 10 * torch.randn(6, 48, dtype=torch.float64)
    flat = inter_contrast(p, [q], normalize=False, self_mask=False)
    (grad,) = torch.autograd.grad(flat, p)
    close(flat, 0.0, tol=1e-12)
    assert grad.abs().max().item() < 1e-12
    # masking the self-entry gives the term back its gradient
    live = inter_contrast(p, [q], normalize=False, self_mask=True, tau=50.0)
    (grad,) = torch.autograd.grad(live, p)
    assert grad.abs().max().item() > 1e-6


def test_sigmas_reach_the_mmd_distance():
    # one spatial vector per sample, orthogonal unit vectors: MMD^2 between {e_i} and {e_j}
    # with one kernel of bandwidth s is 2 - 2 exp(-2 / (2 s^2)).
    sets = EYE3[:, None, :]  # B x n=1 x C
    d = 2 - 2 * math.exp(-1.0)  # sigma = 1
    row = torch.tensor([0.0, d, d], dtype=torch.float64)
    want = torch.softmax(-row, 0)
    torch.testing.assert_close(transport_map(sets, distance="mmd", sigmas=[1.0])[0], want)
    # summed kernels double d, the mean of two equal kernels keeps it
    torch.testing.assert_close(
        transport_map(sets, distance="mmd", sigmas=[1.0, 1.0], kernels="mean")[0], want
    )
    torch.testing.assert_close(
        transport_map(sets, distance="mmd", sigmas=[1.0, 1.0], kernels="sum")[0],
        torch.softmax(-2 * row, 0),
    )
    assert not torch.allclose(
        transport_map(sets, distance="mmd")[0], want
    )  # default bandwidths differ


# ------------------------------------------------------------------------------ L_std sum


def test_soft_target_reduction_sum_is_batch_times_mean():
    torch.manual_seed(1)
    s, t = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    mean = soft_target_kl(s, t, reduction="mean")
    close(soft_target_kl(s, t, reduction="sum"), 5 * mean.item())
    # hand value for one sample: p_T = (1/2, 1/2), p_S = (1, 0) at the limit -> use finite
    s1, t1 = torch.tensor([[math.log(3), 0.0]]), torch.tensor([[0.0, 0.0]])
    # forward KL(p_T || p_S) with p_S = (3/4, 1/4), p_T = (1/2, 1/2)
    fwd = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    close(soft_target_kl(s1, t1, reduction="sum"), fwd, tol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        soft_target_kl(s, t, reduction="max")


# -------------------------------------------------------------------------------- presets


def test_paper_literal_preset_expands_to_the_printed_equations():
    p = AmalgamationParams(reading="paper-literal")
    assert {k: getattr(p, k) for k in READING_OPTIONS} == PRESETS["paper-literal"]
    assert PRESETS["paper-literal"] == {
        "intra_negatives": "sum",  # Eq. 3: sum over Lambda^-
        "inter_negatives": "sum",  # Eq. 6
        "inter_normalize": False,  # Eq. 5 on the raw reshaped maps
        "self_mask": False,  # Eq. 5's softmax runs over every j
        "kernels": "mean",  # Eq. 9: convex combination
        "align_normalize": False,
        "rec_target": "adapter",
        "lambda_rec": 0.0,  # Eq. 12 has no reconstruction term
        "std_reduction": "sum",  # Eq. 11: sum over x in D_s
        "direction": "reverse",  # Eq. 11: KL(Phi(x, S) || Phi(x, T))
    }
    # the weights of Eq. 12 are not readings: the same under every preset
    assert (p.lambda_intra, p.lambda_inter, p.lambda_align, p.lambda_std) == (1, 1, 10, 1)


def test_explicit_options_override_the_preset():
    p = AmalgamationParams(reading="paper-literal", kernels="sum", lambda_rec=2.0)
    assert (p.kernels, p.lambda_rec, p.intra_negatives) == ("sum", 2.0, "sum")
    # every preset sets every reading option (nothing falls back to a field default)
    for name, values in PRESETS.items():
        assert set(values) == set(READING_OPTIONS), name
        for option, value in values.items():
            assert value in READING_OPTIONS[option][0], (name, option)


def test_cka_family_rows_take_the_preset_and_keep_their_weights():
    for name in ("cka", "cka_intra", "cka_inter"):
        p = METHODS.get(name).Params(reading="paper-literal")
        assert p.self_mask is False and p.lambda_rec == 0.0
    assert METHODS.get("cka_inter").Params(reading="paper-literal").lambda_intra == 0.0


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": 7.5}, "alpha"),
        ({"alpha": -1.01}, "alpha"),
        ({"reading": "literal"}, "reading"),
        ({"kernels": "max"}, "kernels"),
        ({"rec_target": "pixels"}, "rec_target"),
        (
            {
                "lambda_intra": 0,
                "lambda_inter": 0,
                "lambda_align": 0,
                "lambda_std": 0,
                "lambda_rec": 10,
            },
            "trains no student parameter",
        ),
    ],
)
def test_bad_reading_params_are_refused(params, match):
    with pytest.raises(ValidationError, match=match):
        AmalgamationParams(**params)


def test_readings_are_searchable_by_bench_tune(tmp_path):
    from bench.tune.check import load_tune
    from tests.conftest import ROOT

    text = (ROOT / "suites" / "tune_quick.yaml").read_text()
    extra = "space:\n  self_mask: {choices: [true, false]}\n  kernels: {choices: [sum, mean]}\n"
    path = tmp_path / "tune.yaml"
    path.write_text(text.replace("space:\n", extra, 1))
    cfg = load_tune(path)
    assert {"self_mask", "kernels"} <= set(cfg.space)


def test_readings_suite_flips_every_option_around_both_presets():
    """suites/readings.yaml stays in step with methods/readings.py: regenerate its rows
    when a preset changes."""
    from bench.core.config import load_suite
    from bench.experiment.plan import expand
    from tests.conftest import ROOT

    runs = expand(load_suite(ROOT / "suites" / "readings.yaml"))
    cka = [r.spec.params for r in runs if r.spec.method == "cka"]
    for preset, values in PRESETS.items():
        if preset == "cfl-reference":
            continue
        diffs = [{k: p[k] for k in READING_OPTIONS if p[k] != values[k]} for p in cka]
        assert {} in diffs, f"no CKA row at the {preset} reading"
        flipped = {next(iter(d)) for d in diffs if len(d) == 1}
        expected = set(READING_OPTIONS)
        if values["lambda_rec"] == 0:
            expected.discard("rec_target")  # no L_rec: its target changes nothing
        assert flipped == expected, preset
