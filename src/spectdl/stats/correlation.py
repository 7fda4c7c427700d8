"""Pearson and Spearman correlation with confidence intervals, and ordinary least-squares line fits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats._data import Result, check_confidence_level, z_quantile
from spectdl.stats.tables import paired_vectors


@dataclass(frozen=True)
class CorrelationResult(Result):
    """A correlation coefficient (``statistic``), its two-sided p-value for H0: ρ = 0, and its interval."""

    method: str
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence_level: float
    n: int
    label_x: str = "x"
    label_y: str = "y"

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def _xy(data: Any, x: Any, y: Any, min_length: int) -> tuple[np.ndarray, np.ndarray, str, str]:
    u, v, lx, ly = paired_vectors(data, x, y, names=("x", "y"), min_length=min_length)
    for arr, lab in ((u, lx), (v, ly)):
        if np.ptp(arr) == 0:
            raise InputError(
                f"{lab}: all {arr.size} values equal {float(arr[0])!r}; a correlation with a constant "
                "series is undefined"
            )
    return u, v, lx, ly


def pearson(
    data: Any = None, x: Any = None, y: Any = None, *, confidence_level: float = 0.95
) -> CorrelationResult:
    """Pearson's ``r`` (``scipy.stats.pearsonr``) with the Fisher-z interval
    ``tanh(atanh(r) ± z_{1-α/2} / sqrt(n - 3))``. Needs ``n >= 4``.

    Call as ``pearson(df, x="suv_reference", y="suv_dl")`` or ``pearson(u, v)``.
    """
    u, v, lx, ly = _xy(data, x, y, 4)
    cl = check_confidence_level(confidence_level)
    res = stats.pearsonr(u, v)
    ci = res.confidence_interval(cl)
    return CorrelationResult(
        "pearson", float(res.statistic), float(res.pvalue), float(ci.low), float(ci.high), cl, u.size, lx, ly
    )


def spearman(
    data: Any = None, x: Any = None, y: Any = None, *, confidence_level: float = 0.95
) -> CorrelationResult:
    """Spearman's ``ρ`` (``scipy.stats.spearmanr``) with a Fisher-z interval using the Bonett & Wright
    (Psychometrika 2000;65:23-28) standard error ``sqrt((1 + ρ²/2) / (n - 3))``. Needs ``n >= 4``.
    """
    u, v, lx, ly = _xy(data, x, y, 4)
    cl = check_confidence_level(confidence_level)
    res = stats.spearmanr(u, v)
    rho = float(res.statistic)
    if abs(rho) >= 1.0:
        lo = hi = rho
    else:
        half = z_quantile(cl) * math.sqrt((1.0 + rho * rho / 2.0) / (u.size - 3))
        lo, hi = math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)
    return CorrelationResult("spearman", rho, float(res.pvalue), lo, hi, cl, u.size, lx, ly)


def correlation(
    data: Any = None, x: Any = None, y: Any = None, *, method: str = "pearson", confidence_level: float = 0.95
) -> CorrelationResult:
    """:func:`pearson` or :func:`spearman`, chosen by ``method``."""
    if method == "pearson":
        return pearson(data, x, y, confidence_level=confidence_level)
    if method == "spearman":
        return spearman(data, x, y, confidence_level=confidence_level)
    raise InputError(f"method: expected 'pearson' or 'spearman', found {method!r}")


@dataclass(frozen=True)
class LinearFitResult(Result):
    """Least-squares line ``y = slope x + intercept`` with ``R² = r²`` and t intervals (``n - 2`` df).

    ``p_value`` tests H0: slope = 0.
    """

    slope: float
    intercept: float
    r_squared: float
    p_value: float
    slope_ci_low: float
    slope_ci_high: float
    intercept_ci_low: float
    intercept_ci_high: float
    slope_stderr: float
    intercept_stderr: float
    confidence_level: float
    n: int
    label_x: str = "x"
    label_y: str = "y"

    def predict(self, x: Any) -> np.ndarray:
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


def linear_fit(
    data: Any = None, x: Any = None, y: Any = None, *, confidence_level: float = 0.95
) -> LinearFitResult:
    """Ordinary least-squares fit of ``y`` on ``x`` (``scipy.stats.linregress``). Needs ``n >= 3``.

    Intervals: ``b ± t_{1-α/2, n-2} SE(b)`` for slope and intercept.
    """
    u, v, lx, ly = paired_vectors(data, x, y, names=("x", "y"), min_length=3)
    if np.ptp(u) == 0:
        raise InputError(f"{lx}: all {u.size} x values equal {float(u[0])!r}; the slope is undefined")
    if np.ptp(v) == 0:
        raise InputError(f"{ly}: all {v.size} y values equal {float(v[0])!r}; R² is undefined (0/0)")
    cl = check_confidence_level(confidence_level)
    res = stats.linregress(u, v)
    t = float(stats.t.ppf(0.5 + cl / 2.0, u.size - 2))
    return LinearFitResult(
        slope=float(res.slope),
        intercept=float(res.intercept),
        r_squared=float(res.rvalue) ** 2,
        p_value=float(res.pvalue),
        slope_ci_low=float(res.slope - t * res.stderr),
        slope_ci_high=float(res.slope + t * res.stderr),
        intercept_ci_low=float(res.intercept - t * res.intercept_stderr),
        intercept_ci_high=float(res.intercept + t * res.intercept_stderr),
        slope_stderr=float(res.stderr),
        intercept_stderr=float(res.intercept_stderr),
        confidence_level=cl,
        n=int(u.size),
        label_x=lx,
        label_y=ly,
    )
