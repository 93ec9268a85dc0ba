"""bench.report.effects (paired effect, MDE, seeds needed) and ``bench table --effects`` /
``bench power``, checked against values computed by hand or from scipy's noncentral t."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as st

from bench.cli import main
from bench.core.record import RunRecord
from bench.report.effect_tables import resolve_baseline
from bench.report.effects import effects_frame, paired_effect, power_frame, seeds_needed
from bench.report.loading import results_frame

T_975_4 = 2.7764451  # t_{0.975, 4}, from a table


def nct_power(dz: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test: P(|T| > t_crit), T ~ nct(n - 1, dz sqrt(n))."""
    df, nc = n - 1, dz * math.sqrt(n)
    crit = st.t.ppf(1 - alpha / 2, df)
    # P(T < -crit) as the upper tail of -T ~ nct(df, -nc): scipy's cdf turns nan far out
    return st.nct.sf(crit, df, nc) + st.nct.sf(crit, df, -nc)


def nct_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    dz = optimize.brentq(lambda z: nct_power(z, n, alpha) - power, 1e-6, 10.0, xtol=1e-12)
    return dz * sd


def nct_seeds(sd: float, delta: float, power: float = 0.8) -> int:
    n = 2
    while nct_power(delta / sd, n) < power:
        n += 1
    return n


# ------------------------------------------------------------------- maths


def test_paired_effect_against_hand_computed_values():
    e = paired_effect([1, 2, 3, 4, 5], [0, 2, 1, 3, 4])  # d = 1, 0, 2, 1, 1
    assert e.n == 5 and e.mean == pytest.approx(1.0) and e.sd == pytest.approx(math.sqrt(0.5))
    half = T_975_4 * math.sqrt(0.5) / math.sqrt(5)
    assert e.ci_low == pytest.approx(1.0 - half, abs=1e-6)
    assert e.ci_high == pytest.approx(1.0 + half, abs=1e-6)
    t = 1.0 / (math.sqrt(0.5) / math.sqrt(5))
    assert e.pvalue == pytest.approx(2 * st.t.sf(t, 4))
    assert e.mde == pytest.approx(nct_mde(math.sqrt(0.5), 5), abs=1e-4)
    assert e.reason is None


def test_mde_follows_alpha_power_and_confidence():
    a, b = [1, 2, 3, 4, 5], [0, 2, 1, 3, 4]
    e = paired_effect(a, b, confidence=0.9, alpha=0.01, power=0.9)
    assert e.mde == pytest.approx(nct_mde(math.sqrt(0.5), 5, alpha=0.01, power=0.9), abs=1e-4)
    half = st.t.ppf(0.95, 4) * math.sqrt(0.5) / math.sqrt(5)
    assert (e.ci_low, e.ci_high) == pytest.approx((1 - half, 1 + half))


def test_undefined_cases_say_why():
    one = paired_effect([0.9], [0.8])
    assert one.n == 1 and one.mean == pytest.approx(0.1)
    assert one.ci_low is None and one.mde is None and one.sd is None
    assert one.reason == "fewer than 2 paired seeds"
    flat = paired_effect([81.0, 82.0, 83.0], [80.0, 81.0, 82.0])  # d = 1, 1, 1
    assert flat.sd == 0.0 and flat.ci_low is None and flat.mde is None and flat.pvalue is None
    assert flat.reason == "zero variance of the paired differences"
    assert paired_effect([], []).reason == "no paired seeds"
    with pytest.raises(ValueError, match="differ in length"):
        paired_effect([1, 2], [1])


@pytest.mark.parametrize(("sd", "delta"), [(1.0, 1.0), (0.7, 1.0), (2.0, 0.5), (1.0, 3.0)])
def test_seeds_needed_against_noncentral_t(sd: float, delta: float):
    n = seeds_needed(sd, delta)
    assert n == nct_seeds(sd, delta)
    assert nct_power(delta / sd, n) >= 0.8 and (n == 2 or nct_power(delta / sd, n - 1) < 0.8)


def test_seeds_needed_edges():
    assert seeds_needed(1.0, 1.0) == 10  # the textbook d = 1: 10 pairs for 80 % power
    assert seeds_needed(0.0, 1.0) == 2
    assert seeds_needed(None, 1.0) is None
    assert seeds_needed(1.0, 100.0) == 2  # the solver gives up (nan) on huge effects
    with pytest.raises(ValueError, match="delta must be > 0"):
        seeds_needed(1.0, 0.0)


# ------------------------------------------------------------------- frames


def record(row, column, seed, acc, *, row_order=0, column_order=0, **extra) -> RunRecord:
    return RunRecord.parse(
        {
            "run_key": f"{row}-{column}-{seed}".replace(" ", "_"),
            "status": "finished",
            "method": "vanilla_kd" if row == "Vanilla KD" else "cka",
            "row": row,
            "row_order": row_order,
            "column": column,
            "column_order": column_order,
            "seed": seed,
            "metrics": {"test_acc": acc},
        }
        | extra
    )


def test_effects_frame_pairs_by_seed_in_points():
    recs = [
        record("Vanilla KD", "digits", s, a, row_order=5)
        for s, a in enumerate([0.79, 0.80, 0.99, 0.83])
    ]
    recs += [record("Vanilla KD", "dogs", 0, 0.5, row_order=5, column_order=1)]
    # CKA lacks seed 2 (the baseline's outlier): pairs are seeds 0, 1, 3 -> d = 1, 2, 2
    recs += [
        record("CKA", "digits", s, a, row_order=9) for s, a in [(0, 0.80), (1, 0.82), (3, 0.85)]
    ]
    recs += [record("CKA", "dogs", 0, 0.6, row_order=9, column_order=1)]
    recs += [record("Alpha", "digits", 0, 0.7, row_order=7)]
    frame = effects_frame(results_frame(recs), "Vanilla KD")
    assert list(zip(frame["row"], frame["column"])) == [
        ("Alpha", "digits"),
        ("Alpha", "dogs"),
        ("CKA", "digits"),
        ("CKA", "dogs"),
    ]
    cka = frame.set_index(["row", "column"]).loc[("CKA", "digits")]
    assert cka["n"] == 3 and cka["mean"] == pytest.approx(5 / 3)
    assert cka["sd"] == pytest.approx(np.std([1, 2, 2], ddof=1))
    half = st.t.ppf(0.975, 2) * cka["sd"] / math.sqrt(3)
    assert (cka["ci_low"], cka["ci_high"]) == pytest.approx((5 / 3 - half, 5 / 3 + half))
    dogs = frame.set_index(["row", "column"]).loc[("CKA", "dogs")]
    assert dogs["n"] == 1 and dogs["mean"] == pytest.approx(10.0) and np.isnan(dogs["ci_low"])
    assert frame.set_index(["row", "column"]).loc[("Alpha", "dogs"), "reason"] == "no paired seeds"
    with pytest.raises(
        ValueError, match=r"baseline row 'Nope' .*known rows: 'Vanilla KD', 'Alpha', 'CKA'"
    ):
        effects_frame(results_frame(recs), "Nope")


def test_power_frame():
    recs = [record("Vanilla KD", "digits", s, 0.80) for s in range(5)]
    recs += [
        record("CKA", "digits", s, a, row_order=1)
        for s, a in enumerate([0.81, 0.80, 0.82, 0.81, 0.81])
    ]
    out = power_frame(results_frame(recs), "Vanilla KD", delta=1.0).iloc[0]
    assert out["n"] == 5 and out["sd"] == pytest.approx(math.sqrt(0.5))
    assert out["mde"] == pytest.approx(nct_mde(math.sqrt(0.5), 5), abs=1e-4)
    assert out["seeds_needed"] == nct_seeds(math.sqrt(0.5), 1.0)


# --------------------------------------------------------------------- CLI


def write_runs(root: Path, recs: list[RunRecord]) -> Path:
    for rec in recs:
        path = root / "runs" / rec.run_key / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec.dump()))
    return root


@pytest.fixture
def suite_dir(tmp_path: Path) -> Path:
    recs = [record("Vanilla KD", "digits", s, 0.80, row_order=1) for s in range(5)]
    cka = [0.81, 0.80, 0.82, 0.81, 0.81]  # d = 1, 0, 2, 1, 1 points
    recs += [record("CKA", "digits", s, a, row_order=2) for s, a in enumerate(cka)]
    recs += [record("Supervised", "digits", s, 0.9) for s in range(5)]
    return write_runs(tmp_path / "suite", recs)


def test_bench_table_effects(suite_dir: Path, capsys, tmp_path: Path):
    assert main(["table", str(suite_dir), "--effects"]) == 0
    out = capsys.readouterr().out
    mde = nct_mde(math.sqrt(0.5), 5)
    assert f"+1.00 [+0.12, +1.88] (n=5, MDE {mde:.1f})" in out
    assert "(n=5; zero variance of the paired differences)" in out  # Supervised: d = 10 each
    assert (
        "baseline row Vanilla KD" in out and "95 % CI of the paired per-seed difference (t)" in out
    )
    assert "80 % power" in out and "alpha 0.05" in out
    tex = tmp_path / "effects.tex"
    assert main(["table", str(suite_dir), "--effects", "--format", "latex", "--out", str(tex)]) == 0
    text = tex.read_text()
    assert capsys.readouterr().out.strip() == f"wrote {tex}"
    assert r"\toprule" in text and "+1.00 [+0.12, +1.88]" in text and r"\footnotesize" in text
    assert main(["table", str(suite_dir), "--effects", "--format", "csv", "--baseline", "CKA"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0] == "row,column,n,mean,sd,ci_low,ci_high,pvalue,mde,reason"
    assert csv[2].startswith("Vanilla KD,digits,5,-1,")


def test_baseline_from_suite_yaml(suite_dir: Path, capsys):
    assert resolve_baseline(suite_dir) == "Vanilla KD"
    (suite_dir / "suite.yaml").write_text("name: quick\nreference: CKA\n")
    assert resolve_baseline(suite_dir) == "CKA"
    assert resolve_baseline(suite_dir, "Supervised") == "Supervised"
    assert main(["table", str(suite_dir), "--effects"]) == 0
    assert "baseline row CKA" in capsys.readouterr().out


def test_unknown_baseline_exits_2(suite_dir: Path, capsys):
    assert main(["table", str(suite_dir), "--effects", "--baseline", "Nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'Nope'" in err and "'Vanilla KD', 'CKA'" in err
    assert main(["power", str(suite_dir), "--delta", "1", "--baseline", "Nope"]) == 2


def test_bench_power(suite_dir: Path, capsys):
    assert main(["power", str(suite_dir), "--delta", "1"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("| CKA"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    mde = nct_mde(math.sqrt(0.5), 5)
    assert cells == ["CKA", "digits", "5", "0.71", f"{mde:.2f}", str(nct_seeds(math.sqrt(0.5), 1))]
    assert "seeds for 1 pts" in out and "Vanilla KD" in out


@pytest.mark.parametrize("delta", ["0", "-1"])
def test_power_delta_must_be_positive(suite_dir: Path, capsys, delta: str):
    assert main(["power", str(suite_dir), f"--delta={delta}"]) == 2
    assert "--delta must be > 0" in capsys.readouterr().err


def test_seeds_needed_for_a_large_effect_where_statsmodels_gives_nan():
    """sd 0.15, delta 1 (dz = 6.67): statsmodels' power is NaN for n = 3..5 (scipy's
    noncentral t far in its tail); by hand, n = 2 reaches 0.54 and n = 3 0.9986, so 3."""
    from scipy import stats

    from bench.report.effects import paired_power, seeds_needed

    def by_hand(n):
        crit = stats.t.ppf(0.975, n - 1)
        nc = (1 / 0.15) * n**0.5
        return stats.nct.sf(crit, n - 1, nc) + stats.nct.sf(crit, n - 1, -nc)

    assert paired_power(1 / 0.15, 2) == pytest.approx(by_hand(2), abs=1e-6) and by_hand(2) < 0.8
    assert paired_power(1 / 0.15, 3) == pytest.approx(by_hand(3), abs=1e-6) and by_hand(3) >= 0.8
    assert seeds_needed(0.15, 1.0) == 3
