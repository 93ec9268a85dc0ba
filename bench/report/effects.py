"""Effect sizes and power of paired comparisons over seeds.

A row is compared with a baseline row by pairing their runs by seed: d = a - b per seed.
:func:`paired_effect` gives the mean of d with its t confidence interval and the
minimum detectable effect (MDE): the smallest true mean difference a two-sided paired
t-test detects with the asked power given the seeds at hand and the measured sd of d.
:func:`seeds_needed` turns that around: the paired seeds a given difference needs.
Distributions come from scipy.stats and statsmodels.stats.power.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats as _st
from statsmodels.stats.power import TTestPower

# imported at the top: its first import installs an "always" filter for this warning,
# which inside a later ``catch_warnings`` would beat our "ignore"
from statsmodels.tools.sm_exceptions import ConvergenceWarning

_TTEST = TTestPower()


@dataclass(frozen=True)
class Effect:
    """Mean paired difference ``a - b`` with its CI, p-value and MDE (units of a and b).

    ``ci_low``, ``ci_high``, ``pvalue`` and ``mde`` are None when they are undefined
    (fewer than 2 pairs, or zero variance of the differences); ``reason`` says why."""

    n: int
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    pvalue: float | None = None
    mde: float | None = None
    reason: str | None = None


EFFECT_COLUMNS = [f.name for f in fields(Effect)]


def _check_levels(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")


def min_detectable_effect(
    n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest true mean difference a two-sided paired t-test at ``alpha`` detects with
    probability ``power`` from ``n`` pairs whose differences have sample sd ``sd``."""
    _check_levels(alpha, power)
    if n < 2 or not sd > 0:
        return None
    dz = _TTEST.solve_power(
        effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided"
    )
    return float(dz) * float(sd)


def paired_effect(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Effect:
    """The paired difference ``a - b`` (same length; position = pair): n, mean, sd
    (ddof=1), the ``confidence`` t interval of the mean (``scipy.stats.ttest_rel``), its
    two-sided p-value and the MDE at ``alpha`` / ``power`` (:func:`min_detectable_effect`)."""
    _check_levels(alpha, power)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    a, b = np.asarray(a, float), np.asarray(b, float)
    n, d = len(a), a - b
    if n == 0:
        return Effect(n=0, reason="no paired seeds")
    mean = float(d.mean())
    if n < 2:
        return Effect(n=n, mean=mean, reason="fewer than 2 paired seeds")
    sd = float(d.std(ddof=1))
    scale = float(np.max(np.abs(np.concatenate([a, b]))))
    if sd <= 1e-9 * max(1.0, scale):  # round-off of equal differences is no variance
        return Effect(n=n, mean=mean, sd=0.0, reason="zero variance of the paired differences")
    res = _st.ttest_rel(a, b)
    ci = res.confidence_interval(confidence)
    return Effect(
        n=n,
        mean=mean,
        sd=sd,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        pvalue=float(res.pvalue),
        mde=min_detectable_effect(n, sd, alpha=alpha, power=power),
    )


def paired_power(effect_size: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test with ``n`` pairs at standardised effect
    ``effect_size`` (statsmodels' TTestPower; where it gives NaN, as scipy's noncentral t
    does far in a tail for large effects, the two tails from ``nct.sf``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(_TTEST.power(effect_size=effect_size, nobs=n, alpha=alpha,
                               alternative="two-sided"))  # fmt: skip
    if math.isfinite(p):
        return p
    df, nc = n - 1, effect_size * math.sqrt(n)
    crit = _st.t.ppf(1 - alpha / 2, df)
    return float(_st.nct.sf(crit, df, nc) + _st.nct.sf(crit, df, -nc))


def seeds_needed(
    sd: float | None, delta: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Fewest paired seeds (>= 2) whose two-sided paired t-test at ``alpha`` detects a true
    mean difference ``delta`` with probability ``power``, given the sd of the paired
    differences; None when ``sd`` is unknown, 2 when it is zero."""
    _check_levels(alpha, power)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    if sd is None or math.isnan(sd):
        return None
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd == 0:
        return 2
    es = delta / sd

    def reaches(n: int) -> bool:
        return paired_power(es, n, alpha=alpha) >= power

    with warnings.catch_warnings():  # huge effects: the solver may not converge (nan)
        warnings.simplefilter("ignore", ConvergenceWarning)
        guess = _TTEST.solve_power(
            effect_size=es, nobs=None, alpha=alpha, power=power, alternative="two-sided"
        )
    guess = float(np.asarray(guess).squeeze())
    n = max(2, math.ceil(guess - 1e-9)) if math.isfinite(guess) else 2
    while n > 2 and reaches(n - 1):  # round-off put the root just above an integer
        n -= 1
    if reaches(n):
        return n
    lo, hi = n, n * 2  # power grows with n: bracket, then bisect
    while not reaches(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


# ------------------------------------------------------------------------ frames


def _order(df: pd.DataFrame, name: str) -> list[str]:
    """Labels of ``name`` (row | column) by their ``<name>_order``, then by label."""
    first = df.groupby(name, sort=False)[f"{name}_order"].min()
    return sorted(first.index, key=lambda k: (first[k], str(k)))


def _values(df: pd.DataFrame, metric: str) -> dict[tuple[str, str], dict]:
    """{(row, column): {seed: value in points}} (duplicate runs of a seed averaged)."""
    long = df[["row", "column", "seed"]].assign(value=df[metric].astype(float) * 100.0)
    long = long.dropna(subset=["value"])
    means = long.groupby(["row", "column", "seed"], sort=False)["value"].mean().reset_index()
    return {
        (row, col): dict(zip(g["seed"], g["value"]))
        for (row, col), g in means.groupby(["row", "column"], sort=False)
    }


def _check_baseline(df: pd.DataFrame, baseline: str) -> list[str]:
    rows = _order(df, "row") if not df.empty else []
    if baseline not in rows:
        known = ", ".join(repr(r) for r in rows) or "none"
        raise ValueError(f"baseline row {baseline!r} is not in the results; known rows: {known}")
    return rows


def effects_frame(
    df: pd.DataFrame,
    baseline: str,
    *,
    metric: str = "test_acc",
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """Every row but ``baseline`` against ``baseline``, per column, paired by seed, in
    percentage points (``metric`` x 100): one line per (row, column) with the fields of
    :class:`Effect`, rows and columns in the frame's order (``row_order``,
    ``column_order``). Raises ValueError when ``baseline`` is not a row of ``df``."""
    rows = _check_baseline(df, baseline)
    columns = _order(df, "column")
    values = _values(df, metric)
    out = []
    for row in rows:
        if row == baseline:
            continue
        for col in columns:
            mine, base = values.get((row, col), {}), values.get((baseline, col), {})
            seeds = sorted(set(mine) & set(base), key=lambda s: (str(type(s)), s))
            eff = paired_effect(
                [mine[s] for s in seeds],
                [base[s] for s in seeds],
                confidence=confidence,
                alpha=alpha,
                power=power,
            )
            out.append({"row": row, "column": col} | asdict(eff))
    return pd.DataFrame(out, columns=["row", "column", *EFFECT_COLUMNS])


def power_frame(
    df: pd.DataFrame,
    baseline: str,
    *,
    delta: float,
    metric: str = "test_acc",
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """Per (row, column) against ``baseline``, in points: n paired seeds, the sd of the
    paired differences, the MDE at those seeds and the seeds needed to detect ``delta``
    (columns row, column, n, sd, mde, seeds_needed, reason)."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    eff = effects_frame(df, baseline, metric=metric, alpha=alpha, power=power)
    need = [
        seeds_needed(None if pd.isna(sd) else float(sd), delta, alpha=alpha, power=power)
        for sd in eff["sd"]
    ]
    out = eff[["row", "column", "n", "sd", "mde", "reason"]].copy()
    out.insert(5, "seeds_needed", pd.array(need, dtype="Int64"))
    return out
