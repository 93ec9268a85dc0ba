"""Readings of the paper's ambiguous equations (Eq. 3-12) and the named presets over them.

The paper (arXiv 2307.14781) publishes no code, and several printed details admit more than
one reading. Each reading is an option of :class:`methods.amalgamation.AmalgamationParams`;
a preset (``reading: <name>``) fills every option the user leaves unset:

* ``paper-literal`` -- every choice exactly as printed: summed negatives (Eq. 3, 6), raw
  (unnormalised) rows and the self-entry kept in the transport map (Eq. 5), the convex (mean)
  kernel combination of Eq. 9 on unnormalised common features, no reconstruction term
  (Eq. 12 has none), ``KL(p_S || p_T)`` summed over the samples (Eq. 11).
* ``default`` -- the reading the reproduction study selected on the labelled validation split
  (``suites/readings.yaml``, ``python -m bench readings``; evidence in
  ``docs/reproduction.md``). Never chosen on test.
* ``cfl-reference`` -- what the CFL reference code does (summed kernels on L2-normalised
  features, ``L_rec`` on the raw teacher maps, Hinton's KL). ``cfl`` (its own params,
  :mod:`methods.cfl`) takes its defaults from it; a CKA-family row can take it as a whole.

Options that are not readings (loss weights other than ``lambda_rec``, ``alpha``, ``tau``,
``T``, ``distance``, ``common_space``, ``sigmas``) keep their own defaults under every preset.
"""

from __future__ import annotations

from typing import Any

#: option -> (choices, what the choice means); the order is the study's order.
READING_OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "intra_negatives": (("sum", "mean"), "reduction over the 2(B-1) negatives of L_intra (Eq. 3)"),
    "inter_negatives": (("sum", "mean"), "reduction over the B-1 negatives of L_inter (Eq. 6)"),
    "inter_normalize": ((True, False), "L2-normalise each flattened sample before d (Eq. 5)"),
    "self_mask": ((True, False), "drop j = i from the transport map's softmax (Eq. 5)"),
    "kernels": (("sum", "mean"), "Gaussian kernels summed (CFL code) or averaged (Eq. 9)"),
    "align_normalize": ((True, False), "L2-normalise common features before MMD (Eq. 7-10)"),
    "rec_target": (("raw", "adapter"), "L_rec target in the mlp space: raw pooled F_t or adapter"),
    "lambda_rec": ((10.0, 0.0), "weight of CFL's reconstruction term (absent from Eq. 12)"),
    "std_reduction": (("mean", "sum"), "batch reduction of L_std (Eq. 11 sums over samples)"),
    "direction": (("forward", "reverse"), "KL(p_T||p_S) (Hinton) or KL(p_S||p_T) (Eq. 11)"),
}

PAPER_LITERAL: dict[str, Any] = {
    "intra_negatives": "sum",
    "inter_negatives": "sum",
    "inter_normalize": False,
    "self_mask": False,
    "kernels": "mean",
    "align_normalize": False,
    "rec_target": "adapter",  # unused: lambda_rec = 0
    "lambda_rec": 0.0,
    "std_reduction": "sum",
    "direction": "reverse",
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper-literal": PAPER_LITERAL,
    # Chosen on the validation split by suites/readings.yaml (docs/reproduction.md): the
    # printed value unless the other wins on val by > 0.5 pt and > 1 s.e., and never a
    # reading that makes a term constant (flat_terms). Reached in rounds: round 1 started
    # from mean/mask/normalise/raw-L_rec/Hinton-KL everywhere, where only the reductions
    # over negatives (sum: -23 / -77 val points) and the kernel combination (sum: -11)
    # were decisive; round 2, with Eq. 11's sum over samples back (L_std ~B x the other
    # terms), found the negatives' reduction within noise too, so it returned to the sum.
    # What is left differs from the printed reading in one option:
    "default": {
        **PAPER_LITERAL,
        "inter_normalize": True,  # False with the self-entry kept makes L_inter constant
    },
    "cfl-reference": {
        "intra_negatives": "mean",
        "inter_negatives": "mean",
        "inter_normalize": True,
        "self_mask": True,
        "kernels": "sum",
        "align_normalize": True,
        "rec_target": "raw",
        "lambda_rec": 10.0,
        "std_reduction": "mean",
        "direction": "forward",
    },
}

READINGS = tuple(PRESETS)

#: How PRESETS["default"] was reached (rendered into docs/reproduction.md).
STUDY_HISTORY = (
    "Coordinate rounds on `suites/readings.yaml` (digits, 8 epochs, 3 seeds, validation "
    "split), each flipping every option once around the current default:",
    "",
    "1. Start: mean reductions, masked self-entry, normalised rows and features, `kernels: "
    "mean`, `L_rec` (10) on the raw teacher map, Hinton's batch-mean KL. Decisive: summed "
    "negatives lose 23 (L_intra) and 77 (L_inter) validation points, summed kernels 11. "
    "Every other option was within noise, so it went back to its printed value (row "
    "normalisation excepted: printed, with the self-entry kept, it makes `L_inter` constant).",
    "2. With Eq. 11's sum over samples back, `L_std` weighs about B = 64 times the per-sample "
    "terms, and the reduction over negatives no longer mattered (-0.1 ± 0.9 and +0.5 ± 0.6 "
    "points): back to the printed sum.",
    "3. No flip wins (the table above): the default is the paper-literal reading with "
    "L2-normalised rows in Eq. 5. Its one decisive option is `std_reduction`: a batch-mean "
    "`L_std` beside summed negatives collapses CKA to about 22 %.",
)


def flat_terms(readings: dict[str, Any]) -> list[str]:
    """Loss terms that a combination of readings turns into (near-)constants: such a reading
    silently removes a term the paper ablates and credits, so the study never picks it to
    break a tie. Unnormalised rows with the self-entry kept: the distances between raw
    feature maps are large, every transport-map row is one-hot on itself (``pi = I``) and
    ``L_inter`` is constant (tests/test_readings.py)."""
    out = []
    if (
        readings.get("inter_normalize") is False
        and readings.get("self_mask") is False
        and readings.get("distance", "euclidean") != "cosine"
    ):
        out.append("L_inter (unnormalised rows keep exp(0) for themselves: pi = I)")
    return out


def expand_reading(data: dict[str, Any], default_reading: str) -> dict[str, Any]:
    """``data`` with every reading option it leaves unset filled from its ``reading`` preset
    (``default_reading`` when it names none). Explicit values always win."""
    reading = data.get("reading", default_reading)
    if reading not in PRESETS:
        return data  # the Literal field reports the unknown name
    return {**PRESETS[reading], **data}
