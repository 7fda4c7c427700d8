"""Paired two-sample tests on per-case values: Wilcoxon signed-rank and paired t.

The differences are ``d_i = a_i - b_i`` (so ``paired_test(df, a="psnr_input", b="psnr_enhanced")``
gives negative estimates when enhancement raises PSNR). Test statistics and p-values come from
``scipy.stats``; the effect sizes and the Hodges-Lehmann interval are added here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats._data import Result, check_confidence_level, z_quantile
from spectdl.stats.tables import as_vector, paired_vectors

_ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass(frozen=True)
class PairedTestResult(Result):
    """Outcome of a paired comparison.

    Attributes:
        test: ``"wilcoxon"``, ``"paired_t"`` or ``"delong"``.
        statistic: the test statistic (scipy's convention: for a two-sided Wilcoxon, the smaller of
            the positive and negative rank sums; for the t-test, ``t``; for DeLong, ``z``).
        p_value: p-value for ``alternative``.
        effect_size: see ``effect_size_name`` (rank-biserial ``r``, Cohen's ``d_z``, AUC difference).
        estimate: the location estimate whose interval is given (Hodges-Lehmann pseudomedian of
            ``a - b``, mean of ``a - b``, or ``AUC_a - AUC_b``); its name is ``estimate_name``.
        ci_low, ci_high: two-sided ``confidence_level`` interval of ``estimate`` (whatever
            ``alternative`` is); infinite when the sample is too small to reach that level.
        n: number of pairs used (for Wilcoxon with ``zero_method="wilcox"``, non-zero differences).
        df: degrees of freedom of the t-test, ``None`` otherwise.
    """

    test: str
    statistic: float
    p_value: float
    effect_size: float
    effect_size_name: str
    estimate: float
    estimate_name: str
    ci_low: float
    ci_high: float
    confidence_level: float
    n: int
    alternative: str = "two-sided"
    df: float | None = None
    label_a: str = "a"
    label_b: str = "b"

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def _check_alternative(alternative: str) -> str:
    if alternative not in _ALTERNATIVES:
        raise InputError(f"alternative: expected one of {_ALTERNATIVES}, found {alternative!r}")
    return alternative


def _signed_rank_null_cdf(n: int) -> np.ndarray:
    """``P(T+ <= t)`` for ``t = 0..n(n+1)/2`` under H0 with ``n`` untied, non-zero differences.

    Each rank ``r`` enters the positive sum with probability 1/2, so the count of sign patterns
    reaching a given sum is the coefficient of ``prod_r (1 + x^r)``; float64 holds these counts
    exactly up to n = 50 (at most 2^50 < 2^53).
    """
    total = n * (n + 1) // 2
    counts = np.zeros(total + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0**n


def hodges_lehmann(d: np.ndarray, confidence_level: float = 0.95) -> tuple[float, float, float]:
    """Hodges-Lehmann pseudomedian of ``d`` and its distribution-free interval (Tukey/Walsh).

    With the ``M = n(n+1)/2`` Walsh averages ``(d_i + d_j)/2, i <= j`` sorted as ``W_(1..M)``,
    the estimate is their median and the interval is ``[W_(c+1), W_(M-c)]``, where ``c`` is the
    largest integer with ``P(T+ <= c) <= α/2`` under H0 (Hollander & Wolfe, Nonparametric
    Statistical Methods, §3.3). ``c`` comes from the exact null distribution when ``n <= 50`` and
    the differences are untied and non-zero, else from the normal approximation with continuity
    and tie corrections. This is the interval obtained by inverting the signed-rank test.

    Returns ``(estimate, low, high)``; the bounds are ``-inf, inf`` when ``n`` is too small for
    the requested level. Memory is O(n²).
    """
    d = as_vector(d, "d")
    confidence_level = check_confidence_level(confidence_level)
    n = d.size
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    m = walsh.size
    estimate = float(np.median(walsh))
    alpha = 1.0 - confidence_level
    _, tie_counts = np.unique(np.abs(d), return_counts=True)
    untied = tie_counts.max() == 1 and not np.any(d == 0)
    if n <= 50 and untied:
        cdf = _signed_rank_null_cdf(n)
        below = np.flatnonzero(cdf <= alpha / 2.0 + 1e-12)
        c = int(below[-1]) if below.size else -1
    else:
        var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(tie_counts**3 - tie_counts)) / 48.0
        c = math.floor(m / 2.0 - 0.5 - z_quantile(confidence_level) * math.sqrt(var))
    if c < 0:
        return estimate, -math.inf, math.inf
    return estimate, float(walsh[c]), float(walsh[m - c - 1])


def wilcoxon_test(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    alternative: str = "two-sided",
    zero_method: str = "wilcox",
    method: str = "auto",
    confidence_level: float = 0.95,
) -> PairedTestResult:
    """Wilcoxon signed-rank test of ``a - b`` (``scipy.stats.wilcoxon``).

    Call as ``wilcoxon_test(df, a="col_a", b="col_b")`` or ``wilcoxon_test(x, y)``.

    Effect size: the matched-pairs rank-biserial correlation ``r = (T+ - T-) / S`` with ``T±``
    the rank sums of positive and negative differences and ``S`` the sum of all ranks (Kerby
    2014, Compr. Psychol. 3:11.IT.3.1); ``r`` lies in [-1, 1] and is positive when ``a > b``
    dominates. Zeros are dropped (``"wilcox"``), ranked but unsigned (``"pratt"``), or split
    half and half (``"zsplit"``). Estimate: Hodges-Lehmann pseudomedian of ``a - b`` with its
    signed-rank interval (see :func:`hodges_lehmann`).
    """
    x, y, la, lb = paired_vectors(data, a, b)
    cl = check_confidence_level(confidence_level)
    _check_alternative(alternative)
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise InputError(f"zero_method: expected 'wilcox', 'pratt' or 'zsplit', found {zero_method!r}")
    d = x - y
    if not np.any(d != 0):
        raise InputError(f"{la}, {lb}: every paired difference is zero; the signed-rank test is undefined")
    res = stats.wilcoxon(d, zero_method=zero_method, alternative=alternative, method=method)

    used = d[d != 0] if zero_method == "wilcox" else d
    ranks = stats.rankdata(np.abs(used))
    t_plus = ranks[used > 0].sum()
    t_minus = ranks[used < 0].sum()
    if zero_method == "zsplit":
        t_plus += ranks[used == 0].sum() / 2.0
        t_minus += ranks[used == 0].sum() / 2.0
    r = float((t_plus - t_minus) / ranks.sum())

    est, lo, hi = hodges_lehmann(d, cl)
    return PairedTestResult(
        test="wilcoxon",
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        effect_size=r,
        effect_size_name="rank_biserial",
        estimate=est,
        estimate_name="hodges_lehmann",
        ci_low=lo,
        ci_high=hi,
        confidence_level=cl,
        n=int(used.size),
        alternative=alternative,
        label_a=la,
        label_b=lb,
    )


def paired_t_test(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    alternative: str = "two-sided",
    confidence_level: float = 0.95,
) -> PairedTestResult:
    """Paired t-test of ``a - b`` (``scipy.stats.ttest_rel``).

    ``t = mean(d) / (s_d / sqrt(n))`` on ``n - 1`` degrees of freedom. Effect size: Cohen's
    ``d_z = mean(d) / s_d = t / sqrt(n)`` (``s_d`` with ``n - 1`` in the denominator). Estimate:
    the mean difference with its t interval.
    """
    x, y, la, lb = paired_vectors(data, a, b)
    cl = check_confidence_level(confidence_level)
    _check_alternative(alternative)
    d = x - y
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:
        raise InputError(
            f"{la}, {lb}: every paired difference equals {float(d[0])!r}; the t statistic and d_z are "
            "undefined for differences with zero variance"
        )
    res = stats.ttest_rel(x, y, alternative=alternative)
    ci = stats.ttest_rel(x, y).confidence_interval(cl)
    return PairedTestResult(
        test="paired_t",
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        effect_size=float(d.mean() / sd),
        effect_size_name="cohen_dz",
        estimate=float(d.mean()),
        estimate_name="mean_difference",
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        confidence_level=cl,
        n=int(d.size),
        alternative=alternative,
        df=float(res.df),
        label_a=la,
        label_b=lb,
    )


def paired_test(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    test: str = "wilcoxon",
    alternative: str = "two-sided",
    confidence_level: float = 0.95,
) -> PairedTestResult:
    """Paired comparison of ``a`` and ``b``: ``test="wilcoxon"`` (default) or ``"t"``/``"paired_t"``.

    ``paired_test(df, a="psnr_input", b="psnr_enhanced", test="wilcoxon")`` or
    ``paired_test(x, y, test="t")``. See :func:`wilcoxon_test` and :func:`paired_t_test`.
    """
    if test == "wilcoxon":
        return wilcoxon_test(data, a, b, alternative=alternative, confidence_level=confidence_level)
    if test in ("t", "paired_t", "ttest"):
        return paired_t_test(data, a, b, alternative=alternative, confidence_level=confidence_level)
    raise InputError(f"test: expected 'wilcoxon' or 't', found {test!r}")
