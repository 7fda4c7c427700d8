"""Bland-Altman agreement between two measurement methods on the same cases.

For differences ``d_i = a_i - b_i`` with mean ``d̄`` (the bias) and standard deviation ``s``
(``n - 1`` denominator), the limits of agreement are ``d̄ ± k s`` (``k = 1.96`` for 95 % of the
differences under normality). Bland & Altman, Lancet 1986;i:307-310.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats._data import Result, check_confidence_level
from spectdl.stats.tables import paired_vectors


@dataclass(frozen=True)
class BlandAltmanResult(Result):
    """Bias, limits of agreement and their two-sided ``confidence_level`` intervals.

    ``means`` and ``differences`` (per case, ``(a + b) / 2`` and ``a - b``, or the percentage
    difference ``100 (a - b) / ((a + b) / 2)`` when ``relative``) are kept for plotting.
    """

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    k: float
    bias_ci_low: float
    bias_ci_high: float
    loa_low_ci_low: float
    loa_low_ci_high: float
    loa_high_ci_low: float
    loa_high_ci_high: float
    confidence_level: float
    n: int
    ci_method: str
    relative: bool = False
    label_a: str = "a"
    label_b: str = "b"
    means: np.ndarray = field(default=None, repr=False, compare=False, metadata={"table": False})
    differences: np.ndarray = field(default=None, repr=False, compare=False, metadata={"table": False})

    @property
    def bias_ci(self) -> tuple[float, float]:
        return (self.bias_ci_low, self.bias_ci_high)

    @property
    def loa_low_ci(self) -> tuple[float, float]:
        return (self.loa_low_ci_low, self.loa_low_ci_high)

    @property
    def loa_high_ci(self) -> tuple[float, float]:
        return (self.loa_high_ci_low, self.loa_high_ci_high)


def bland_altman(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    k: float = 1.96,
    confidence_level: float = 0.95,
    ci_method: str = "exact",
    relative: bool = False,
) -> BlandAltmanResult:
    """Bland-Altman analysis of ``a`` against ``b``.

    Call as ``bland_altman(df, a="suv_dl", b="suv_reference")`` or ``bland_altman(x, y)``.

    Intervals (``α = 1 - confidence_level``, ``ν = n - 1``):

    * bias: ``d̄ ± t_{1-α/2, ν} s / sqrt(n)``.
    * limits, ``ci_method="approximate"`` (Bland & Altman 1986, with their variance
      ``s² (1/n + k²/(2n))``, which is ``3 s²/n`` for ``k = 2``): ``d̄ ± k s ± t_{1-α/2, ν} SE``.
    * limits, ``ci_method="exact"`` (Carkeet, Optom. Vis. Sci. 2015;92:e71-80): the interval of the
      upper limit is ``d̄ + s t' / sqrt(n)`` with ``t'`` the ``α/2`` and ``1 - α/2`` quantiles of the
      non-central t distribution with ``ν`` degrees of freedom and non-centrality ``k sqrt(n)``;
      the lower limit mirrors it. Its outer bounds are one-sided normal tolerance limits.
    """
    x, y, la, lb = paired_vectors(data, a, b, min_length=3)
    cl = check_confidence_level(confidence_level)
    if not (math.isfinite(k) and k > 0):
        raise InputError(f"k: expected a positive multiplier of the SD (1.96 for 95 %), found {k}")
    if ci_method not in ("exact", "approximate"):
        raise InputError(f"ci_method: expected 'exact' or 'approximate', found {ci_method!r}")
    means = (x + y) / 2.0
    d = x - y
    if relative:
        if np.any(means == 0):
            raise InputError(
                f"{la}, {lb}: relative (percentage) differences need non-zero means, found "
                f"{int(np.sum(means == 0))} case(s) with (a + b) / 2 = 0"
            )
        d = 100.0 * d / means
    n = d.size
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        raise InputError(
            f"{la}, {lb}: every difference equals {bias!r}; limits of agreement are degenerate and their "
            "confidence intervals undefined"
        )
    alpha = 1.0 - cl
    nu = n - 1
    t = float(stats.t.ppf(1.0 - alpha / 2.0, nu))
    half_bias = t * sd / math.sqrt(n)
    lo, hi = bias - k * sd, bias + k * sd
    if ci_method == "approximate":
        half = t * sd * math.sqrt(1.0 / n + k * k / (2.0 * n))
        lo_ci, hi_ci = (lo - half, lo + half), (hi - half, hi + half)
    else:
        nc = k * math.sqrt(n)
        q_lo = float(stats.nct.ppf(alpha / 2.0, nu, nc)) / math.sqrt(n)
        q_hi = float(stats.nct.ppf(1.0 - alpha / 2.0, nu, nc)) / math.sqrt(n)
        hi_ci = (bias + sd * q_lo, bias + sd * q_hi)
        lo_ci = (bias - sd * q_hi, bias - sd * q_lo)
    return BlandAltmanResult(
        bias=bias,
        sd=sd,
        loa_low=lo,
        loa_high=hi,
        k=float(k),
        bias_ci_low=bias - half_bias,
        bias_ci_high=bias + half_bias,
        loa_low_ci_low=lo_ci[0],
        loa_low_ci_high=lo_ci[1],
        loa_high_ci_low=hi_ci[0],
        loa_high_ci_high=hi_ci[1],
        confidence_level=cl,
        n=n,
        ci_method=ci_method,
        relative=bool(relative),
        label_a=la,
        label_b=lb,
        means=means,
        differences=d,
    )
