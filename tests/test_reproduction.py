"""``bench readings``: docs/reproduction.md from a finished readings suite, on hand-made
result records (numbers checked by hand; verdicts decided on validation, never on test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.studies.cka import reproduction
from methods.amalgamation import AmalgamationParams
from methods.readings import PRESETS

SEEDS = (0, 1, 2)


def _params(**changes) -> dict:
    return AmalgamationParams.model_validate(changes).model_dump(mode="json")


def _write(runs: Path, row: str, order: int, method: str, params: dict, val, test, falls=0):
    for seed, v, t in zip(SEEDS, val, test):
        key = f"{order:02d}{seed}"
        rec = {
            "run_key": key,
            "status": "finished",
            "suite": "readings",
            "method": method,
            "row": row,
            "row_order": order,
            "column": "digits",
            "column_order": 0,
            "seed": seed,
            "spec": {"params": params},
            "metrics": {
                "val_acc": v,
                "test_acc": t,
                "val_falls": falls,
                "val_fall_drop": 0.2 if falls else 0.0,
            },
            "history": [{"epoch": 1, "val_acc": v, "feat_cos": 0.5, "eff_rank": 4.0}],
        }
        (runs / key).mkdir(parents=True)
        (runs / key / "result.json").write_text(json.dumps(rec))


# a fixed `default` preset for these tests, whatever the shipped one is
TEST_DEFAULT = {
    **PRESETS["paper-literal"],
    "intra_negatives": "mean",
    "inter_negatives": "mean",
    "inter_normalize": True,
}


@pytest.fixture
def study(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setitem(PRESETS, "default", TEST_DEFAULT)
    suite = tmp_path / "readings"
    runs = suite / "runs"
    _write(runs, "Vanilla KD", 0, "vanilla_kd", {}, [0.90, 0.91, 0.92], [0.90, 0.90, 0.90])
    _write(runs, "CKA", 1, "cka", _params(), [0.92, 0.93, 0.94], [0.90, 0.91, 0.92])
    # intra_negatives back to the printed sum: val drops 10 points -> the default is kept
    _write(
        runs,
        "CKA (intra_negatives=sum)",
        2,
        "cka",
        _params(intra_negatives="sum"),
        [0.82, 0.83, 0.84],
        [0.99, 0.99, 0.99],  # test says the opposite: must not matter
        falls=3,
    )
    # kernels flipped to sum (default = printed = mean): val gains 3 points -> the study
    # prefers sum and the page says the shipped default disagrees
    _write(
        runs, "CKA (kernels=sum)", 3, "cka", _params(kernels="sum"), [0.95, 0.96, 0.97], [0.5] * 3
    )
    # direction flipped to forward: +0.3 points only, within MIN_GAIN -> printed kept
    _write(
        runs,
        "CKA (direction=forward)",
        4,
        "cka",
        _params(direction="forward"),
        [0.923, 0.933, 0.943],
        [0.9] * 3,
    )
    # inter_normalize to the printed False: a tie, but with the self-entry kept that makes
    # L_inter constant -> the live reading (True) is kept, with the reason
    _write(
        runs,
        "CKA (inter_normalize=False)",
        5,
        "cka",
        _params(inter_normalize=False),
        [0.921, 0.931, 0.941],
        [0.9] * 3,
    )
    literal = _params(reading="paper-literal")
    _write(runs, "CKA literal", 6, "cka", literal, [0.30, 0.40, 0.50], [0.3, 0.4, 0.5], falls=4)
    combo = _params(lambda_rec=10.0, rec_target="raw")
    _write(runs, "CKA (lambda_rec=10, rec_target=raw)", 7, "cka", combo, [0.9] * 3, [0.9] * 3)
    return suite


def test_rows_are_recognised_by_their_params(study):
    rows = reproduction.collect_rows(reproduction.read_records(study))
    assert rows["CKA"].val == pytest.approx({0: 92.0, 1: 93.0, 2: 94.0})
    assert rows["CKA literal"].collapsed == 3
    flips = reproduction._flips(rows, "default")
    assert set(flips) == {"intra_negatives", "kernels", "direction", "inter_normalize"}
    assert reproduction._base_row(rows, "cka", "paper-literal").label == "CKA literal"


def test_paired_gain_and_the_verdict_rule():
    gain, se, n = reproduction.paired_gain({0: 90.0, 1: 91.0, 2: 92.0}, {0: 91.0, 1: 93.0, 2: 92.0})
    assert (gain, n) == (pytest.approx(1.0), 3)
    assert se == pytest.approx(1.0 / 3**0.5)  # diffs 1, 2, 0: stdev 1
    assert reproduction.wins(1.0, 0.577) and not reproduction.wins(0.4, 0.1)
    assert not reproduction.wins(1.0, 1.5)  # within one standard error


def test_page_reports_val_decisions_and_disagreements(study, tmp_path):
    out = tmp_path / "docs" / "reproduction.md"
    out.parent.mkdir()
    assert main(["readings", str(study), "--out", str(out)]) == 0
    page = out.read_text()
    lines = page.splitlines()
    # summary: the default and the literal rows, with mean ± std by hand
    cka = next(line for line in lines if line.startswith("| CKA | default |"))
    assert "93.00 ± 1.00" in cka and "91.00 ± 1.00" in cka
    literal = next(line for line in lines if line.startswith("| CKA literal | paper-literal |"))
    assert "40.00 ± 10.00" in literal and "| 3/3 |" in literal
    # option table around the default: intra_negatives kept (val -10), though test would
    # flip it
    neg = next(line for line in lines if line.startswith("| `intra_negatives` | mean |"))
    assert "-10.00 ± 0.00 (n=3)" in neg and "keep mean" in neg
    kernels = next(line for line in lines if line.startswith("| `kernels` | mean |"))
    assert "+3.00" in kernels and "**study prefers sum**" in kernels
    direction = next(line for line in lines if line.startswith("| `direction` | reverse |"))
    assert "+0.30" in direction and "keep reverse" in direction
    norm = next(line for line in lines if line.startswith("| `inter_normalize` | true |"))
    assert "keep true: False makes L_inter" in norm
    rec = next(line for line in lines if line.startswith("| `rec_target` |"))
    assert "unused while lambda_rec = 0" in rec
    assert "disagrees with this study on: `kernels` (study: sum)." in page
    combo = next(line for line in lines if line.startswith("| CKA (lambda_rec=10"))
    assert "lambda_rec=10, rec_target=raw" in combo
    # the claim section: CKA - KD, paired by seed: test diffs 0, 1, 2 (mean 1, s.e.
    # 1/sqrt(3)), val diffs 2, 2, 2
    claim = next(line for line in lines if line.startswith("- CKA (default reading)"))
    assert claim.startswith(
        "- CKA (default reading) minus Vanilla KD: +1.00 ± 0.58 test points, "
        "+2.00 ± 0.00 validation points (paired over 3 seeds)"
    )
    assert claim.endswith("here the ordering holds.")
    # every option is explained with both presets' values
    for option in PRESETS["paper-literal"]:
        assert f"| `{option}` |" in page


def test_no_finished_runs_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert main(["readings", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished runs" in err[0]
