"""Seeded bootstrap confidence intervals (a thin layer over ``scipy.stats.bootstrap``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats._data import Result, check_confidence_level
from spectdl.stats.tables import as_vector, column

_METHODS = ("percentile", "basic", "bca")


@dataclass(frozen=True)
class BootstrapResult(Result):
    """``statistic`` of the observed sample, its bootstrap interval and standard error."""

    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    confidence_level: float
    method: str
    n_resamples: int
    seed: int
    n: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def check_bootstrap_args(n_resamples: int, method: str, seed: int) -> tuple[int, str, int]:
    if int(n_resamples) != n_resamples or n_resamples < 100:
        raise InputError(f"n_resamples: expected a whole number >= 100, found {n_resamples!r}")
    m = str(method).lower()
    if m not in _METHODS:
        raise InputError(f"method: expected one of {_METHODS}, found {method!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise InputError(f"seed: expected an integer, found {seed!r}")
    return int(n_resamples), m, int(seed)


def run_bootstrap(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    *,
    confidence_level: float,
    n_resamples: int,
    method: str,
    seed: int,
) -> tuple[float, float, float]:
    """``(low, high, standard_error)`` from ``scipy.stats.bootstrap`` with a fresh seeded generator.

    Several samples are resampled independently of each other (a stratified bootstrap).
    ``statistic(*samples, axis=-1)`` must be vectorised over a leading batch axis.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.bootstrap(
            samples,
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method=method,
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):
        # BCa divides by the spread of the jackknife values; a degenerate sample gives 0/0.
        raise InputError(
            f"method: the {method!r} bootstrap interval is undefined for this sample (every resample "
            "gives the same statistic); use method='percentile'"
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return lo, hi, float(res.standard_error)


def bootstrap_ci(
    data: Any,
    column_name: str | None = None,
    *,
    statistic: Callable[..., Any] = np.mean,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    method: str = "percentile",
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap interval of ``statistic`` over per-case values (cases resampled with replacement).

    Call as ``bootstrap_ci(df, "psnr", seed=1)`` or ``bootstrap_ci(values, seed=1)``.
    ``statistic`` must take an ``axis`` keyword like the numpy reductions (``np.mean``,
    ``np.median``). ``method``: ``"percentile"``, ``"basic"`` or ``"bca"`` (Efron's
    bias-corrected and accelerated). The same ``seed`` gives the same interval.
    """
    values = column(data, column_name, "column_name") if column_name is not None else data
    x = as_vector(values, "data" if column_name is None else f"data ({column_name!r})", min_length=2)
    cl = check_confidence_level(confidence_level)
    n_resamples, method, seed = check_bootstrap_args(n_resamples, method, seed)
    lo, hi, se = run_bootstrap(
        (x,), statistic, confidence_level=cl, n_resamples=n_resamples, method=method, seed=seed
    )
    return BootstrapResult(float(statistic(x, axis=-1)), lo, hi, se, cl, method, n_resamples, seed, x.size)
