"""bench.report.stats: paired tests over seeds on hand-made numbers, and the testability rule."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from bench.report import stats


def test_paired_ttest_matches_hand_computation():
    # d = a - b = [1, 2, 3]: mean 2, sd 1 -> t = 2 / (1 / sqrt(3)) = 3.4641, df = 2
    res = stats.paired_test([11.0, 12.0, 13.0], [10.0, 10.0, 10.0], test="ttest")
    t = 2.0 / (1.0 / math.sqrt(3.0))
    assert res.testable and res.n == 3
    assert res.statistic == pytest.approx(3.4641016, abs=1e-6) == t
    assert res.pvalue == pytest.approx(2 * st.t.sf(t, df=2), rel=1e-12)
    assert res.pvalue == pytest.approx(0.0741799, abs=1e-6)
    assert not res.significant(0.05) and res.significant(0.1)


def test_min_attainable_p():
    assert stats.min_attainable_p("wilcoxon", 3) == 0.25
    assert stats.min_attainable_p("wilcoxon", 5) == 0.0625
    assert stats.min_attainable_p("wilcoxon", 6) == 0.03125
    assert stats.min_attainable_p("ttest", 1) == 1.0
    assert stats.min_attainable_p("ttest", 2) == 0.0


def test_wilcoxon_with_three_pairs_is_not_testable():
    res = stats.paired_test([3.0, 4.0, 5.0], [1.0, 1.0, 1.0], test="wilcoxon", alpha=0.05)
    assert not res.testable and res.pvalue is None and res.statistic is None
    assert res.reason == "with 3 seeds a Wilcoxon test cannot reach p<0.05"
    assert not res.significant(0.05)


def test_wilcoxon_with_six_pairs_reaches_its_exact_minimum():
    a = [2.0, 3.0, 4.0, 5.0, 6.0, 7.5]
    res = stats.paired_test(a, [0.0] * 6, test="wilcoxon")
    assert res.testable and res.pvalue == pytest.approx(2 / 2**6)
    assert res.significant(0.05)


def test_wilcoxon_drops_zero_differences_before_counting():
    res = stats.paired_test([1.0, 2, 3, 4, 5, 6], [1.0, 1, 1, 1, 1, 1], test="wilcoxon")
    assert not res.testable
    assert "5 non-zero paired differences (of 6 seeds)" in res.reason


def test_ttest_needs_two_pairs_and_nonzero_variance():
    one = stats.paired_test([1.0], [0.0])
    assert not one.testable and "at least 2" in one.reason
    flat = stats.paired_test([80.0, 82.0], [70.0, 72.0])  # d = [10, 10]
    assert not flat.testable and "zero variance" in flat.reason


def test_pair_by_seed_uses_common_seeds_only():
    seeds, a, b = stats.pair_by_seed({2: 3.0, 0: 1.0, 1: 2.0}, {0: 0.5, 2: 0.0, 7: 9.0})
    assert seeds == [0, 2] and a == [1.0, 3.0] and b == [0.5, 0.0]


def test_compare_to_best_tests_every_other_row():
    values = {
        "best": {0: 10.0, 1: 11.0, 2: 12.0},
        "close": {0: 10.5, 1: 10.0, 2: 12.5},
        "far": {0: 5.0, 1: 5.5, 2: 6.5},
    }
    out = stats.compare_to_best(values, "best")
    assert set(out) == {"close", "far"}
    assert not out["close"].significant(0.05)
    assert out["far"].significant(0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown test"):
        stats.paired_test([1.0, 2.0], [0.0, 0.0], test="mannwhitney")
    with pytest.raises(ValueError, match="length"):
        stats.paired_test([1.0, 2.0], [0.0])
