"""Paired significance tests over seeds (scipy.stats), with a testability guard.

A comparison pairs two table rows by seed. Before running a test we ask whether it
could have been significant at all with that many pairs; if not, the result is
"not testable" (``pvalue is None``) with a reason that the table footnote prints,
instead of a p-value that is large by construction.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

TESTS = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


@dataclass(frozen=True)
class PairedTest:
    """Outcome of one paired test; ``pvalue is None`` means not testable (see ``reason``)."""

    test: str
    n: int
    statistic: float | None = None
    pvalue: float | None = None
    reason: str | None = None

    @property
    def testable(self) -> bool:
        return self.pvalue is not None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when tested and ``p < alpha``."""
        return self.pvalue is not None and self.pvalue < alpha


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {sorted(TESTS)}")


def min_attainable_p(test: str, n: int) -> float:
    """Smallest two-sided p-value ``test`` can return with ``n`` pairs.

    Exact Wilcoxon signed-rank: all ``n`` non-zero differences of one sign give
    ``p = 2 / 2**n``. Paired t-test: any ``n >= 2`` can reach p -> 0 (given non-zero
    variance of the differences, checked separately); ``n < 2`` gives no test (1.0).
    """
    _check_test(test)
    if test == "wilcoxon":
        return 1.0 if n < 1 else min(1.0, 2.0 / 2.0**n)
    return 0.0 if n >= 2 else 1.0


def _nonzero(d: np.ndarray, scale: float) -> np.ndarray:
    """Differences that are not zero up to float round-off relative to ``scale``."""
    return d[np.abs(d) > 1e-9 * max(1.0, scale)]


def untestable_reason(
    test: str, a: Sequence[float], b: Sequence[float], alpha: float
) -> str | None:
    """Why ``test`` on the pairs ``(a, b)`` could not reach ``p < alpha``; None if it could."""
    _check_test(test)
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    d = a - b
    scale = float(np.max(np.abs(np.concatenate([a, b])))) if n else 1.0
    if test == "ttest":
        if n < 2:
            return f"a paired t-test needs at least 2 paired seeds (have {n})"
        if np.std(d, ddof=1) <= 1e-9 * max(1.0, scale):
            return "the paired differences have zero variance, so a paired t-test is undefined"
        return None
    k = len(_nonzero(d, scale))
    p_min = min_attainable_p(test, k)
    if p_min < alpha:
        return None
    what = f"{n} seeds" if k == n else f"{k} non-zero paired differences (of {n} seeds)"
    return f"with {what} a Wilcoxon test cannot reach p<{alpha:g}"


def paired_test(
    a: Sequence[float], b: Sequence[float], test: str = "ttest", alpha: float = 0.05
) -> PairedTest:
    """Two-sided paired test of ``a`` against ``b`` (same length, position = pair).

    ``ttest``: ``scipy.stats.ttest_rel`` (t = mean(d) / (sd(d) / sqrt(n)), d = a - b, ddof=1).
    ``wilcoxon``: ``scipy.stats.wilcoxon`` on the non-zero differences (exact for small n
    without ties). Returns a not-testable result when the smallest attainable p-value
    is not below ``alpha``.
    """
    _check_test(test)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    n = len(a)
    reason = untestable_reason(test, a, b, alpha)
    if reason is not None:
        return PairedTest(test=test, n=n, reason=reason)
    a, b = np.asarray(a, float), np.asarray(b, float)
    if test == "ttest":
        res = _st.ttest_rel(a, b)
    else:
        res = _st.wilcoxon(_nonzero(a - b, float(np.max(np.abs(np.concatenate([a, b]))))))
    stat, p = float(res.statistic), float(res.pvalue)
    if math.isnan(p):  # defensive: scipy could not compute it
        return PairedTest(test=test, n=n, reason=f"{TESTS[test]} returned no p-value")
    return PairedTest(test=test, n=n, statistic=stat, pvalue=p)


def pair_by_seed(
    x: Mapping[Hashable, float], y: Mapping[Hashable, float]
) -> tuple[list[Hashable], list[float], list[float]]:
    """Seeds present in both ``x`` and ``y`` (sorted) and the aligned values."""
    seeds = sorted(set(x) & set(y), key=lambda s: (str(type(s)), s))
    return seeds, [float(x[s]) for s in seeds], [float(y[s]) for s in seeds]


def paired_test_by_seed(
    x: Mapping[Hashable, float],
    y: Mapping[Hashable, float],
    test: str = "ttest",
    alpha: float = 0.05,
) -> PairedTest:
    """``paired_test`` of ``x`` against ``y`` ({seed: value}), pairing by seed."""
    _, a, b = pair_by_seed(x, y)
    return paired_test(a, b, test=test, alpha=alpha)


def compare_to_best(
    values: Mapping[str, Mapping[Hashable, float]],
    best: str,
    test: str = "ttest",
    alpha: float = 0.05,
) -> dict[str, PairedTest]:
    """Test every row of ``values`` ({row: {seed: value}}) against row ``best``."""
    return {
        row: paired_test_by_seed(vals, values[best], test=test, alpha=alpha)
        for row, vals in values.items()
        if row != best
    }
