"""Binary diagnostic decisions: proportions with Wilson intervals, accuracy tables, McNemar's test.

Decisions and truth are booleans or 0/1 per case (1 = disease present / called positive).
Proportion intervals come from ``statsmodels.stats.proportion.proportion_confint`` and McNemar's
test from ``statsmodels.stats.contingency_tables.mcnemar``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectdl.errors import InputError, require
from spectdl.stats._data import Result, check_confidence_level, z_quantile
from spectdl.stats.tables import as_binary, column, resolve_pair


@dataclass(frozen=True)
class Proportion(Result):
    """``successes / n`` with a two-sided ``confidence_level`` interval (Wilson score by default)."""

    successes: int
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    confidence_level: float
    method: str = "wilson"

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def wilson_interval(successes: int, n: int, confidence_level: float = 0.95) -> Proportion:
    """Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998 method 3).

    Bounds are the roots in ``p`` of ``(p̂ - p)² = z² p (1 - p) / n``:
    ``(p̂ + z²/2n ± z sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``.
    """
    cl = check_confidence_level(confidence_level)
    if int(n) != n or n < 1:
        raise InputError(f"n: expected a positive whole number of trials, found {n!r}")
    if int(successes) != successes or not 0 <= successes <= n:
        raise InputError(f"successes: expected a whole number in [0, n={int(n)}], found {successes!r}")
    sm_prop = require("statsmodels.stats.proportion", "eval")
    lo, hi = sm_prop.proportion_confint(int(successes), int(n), alpha=1.0 - cl, method="wilson")
    return Proportion(
        successes=int(successes),
        n=int(n),
        estimate=int(successes) / int(n),
        ci_low=float(lo),
        ci_high=float(hi),
        confidence_level=cl,
    )


@dataclass(frozen=True)
class DiagnosticResult(Result):
    """Counts of a 2×2 truth/decision table and the derived proportions with Wilson intervals.

    ``ppv`` (TP / (TP + FP)) is ``None`` when no case was called positive, ``npv`` likewise when no
    case was called negative.
    """

    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: Proportion
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion | None
    npv: Proportion | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}
        for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
            p = getattr(self, name)
            out[name] = None if p is None else p.estimate
            out[f"{name}_ci_low"] = None if p is None else p.ci_low
            out[f"{name}_ci_high"] = None if p is None else p.ci_high
        return out


def diagnostic_accuracy(
    data: Any = None, truth: Any = None, decision: Any = None, *, confidence_level: float = 0.95
) -> DiagnosticResult:
    """Accuracy, sensitivity, specificity, PPV and NPV of binary decisions, each with a Wilson interval.

    Call as ``diagnostic_accuracy(df, truth="disease", decision="reader1")`` or
    ``diagnostic_accuracy(y_true, y_called)``. Both classes must be present in ``truth``.
    """
    rt, rd, lt, ld = resolve_pair(data, truth, decision, ("truth", "decision"))
    t = as_binary(rt, "truth" if lt == "truth" else f"truth ({lt!r})")
    d = as_binary(rd, "decision" if ld == "decision" else f"decision ({ld!r})")
    if t.size != d.size:
        raise InputError(f"truth, decision: expected one decision per case, found {t.size} and {d.size}")
    if t.all() or not t.any():
        raise InputError(
            f"truth: all {t.size} cases are {'positive' if t.all() else 'negative'}; sensitivity and "
            "specificity need both classes"
        )
    tp = int(np.sum(t & d))
    fn = int(np.sum(t & ~d))
    tn = int(np.sum(~t & ~d))
    fp = int(np.sum(~t & d))
    cl = check_confidence_level(confidence_level)
    return DiagnosticResult(
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        accuracy=wilson_interval(tp + tn, t.size, cl),
        sensitivity=wilson_interval(tp, tp + fn, cl),
        specificity=wilson_interval(tn, tn + fp, cl),
        ppv=wilson_interval(tp, tp + fp, cl) if tp + fp else None,
        npv=wilson_interval(tn, tn + fn, cl) if tn + fn else None,
    )


@dataclass(frozen=True)
class McNemarResult(Result):
    """McNemar's test on paired binary outcomes.

    ``n10`` counts cases where ``a`` is 1 and ``b`` is 0, ``n01`` the reverse. ``estimate`` is
    ``p_a - p_b = (n10 - n01) / n`` with its Wald interval for paired proportions (Agresti,
    Categorical Data Analysis, §10.1). ``effect_size`` is the conditional odds ratio
    ``n10 / n01`` (``inf`` when only ``n01`` is 0, ``nan`` when there are no discordant pairs).
    ``method`` is ``"exact"`` (binomial on the discordant pairs), ``"chi2"`` or ``"chi2_corrected"``
    (Edwards' continuity correction, ``(|n10 - n01| - 1)² / (n10 + n01)``).
    """

    statistic: float
    p_value: float
    method: str
    effect_size: float
    effect_size_name: str
    estimate: float
    estimate_name: str
    ci_low: float
    ci_high: float
    confidence_level: float
    n: int
    n11: int
    n10: int
    n01: int
    n00: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def mcnemar_from_table(
    table: Any, *, exact: bool | None = None, correction: bool = True, confidence_level: float = 0.95
) -> McNemarResult:
    """McNemar's test from a 2×2 table ``[[n11, n10], [n01, n00]]`` (rows: a = 1, 0; columns: b = 1, 0).

    ``exact=None`` uses the exact binomial test when there are fewer than 25 discordant pairs and
    the chi-square test otherwise; ``correction`` applies to the chi-square test only. The
    statistic is ``(n10 - n01)² / (n10 + n01)`` (minus 1 inside the absolute value if corrected),
    or ``min(n10, n01)`` for the exact test.
    """
    try:
        arr = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"table: expected a 2×2 table of counts, could not read it ({exc})") from exc
    if arr.shape != (2, 2):
        raise InputError(f"table: expected shape (2, 2), found {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise InputError(f"table: expected non-negative whole counts, found {arr.tolist()}")
    cl = check_confidence_level(confidence_level)
    n11, n10, n01, n00 = (int(v) for v in arr.ravel())
    n = n11 + n10 + n01 + n00
    if n == 0:
        raise InputError("table: all counts are zero")
    discordant = n10 + n01
    use_exact = discordant < 25 if exact is None else bool(exact)
    if not use_exact and discordant == 0:
        raise InputError("table: no discordant pairs (n10 = n01 = 0); the chi-square statistic is 0/0")
    ct = require("statsmodels.stats.contingency_tables", "eval")
    res = ct.mcnemar(arr, exact=use_exact, correction=correction)
    method = "exact" if use_exact else ("chi2_corrected" if correction else "chi2")

    diff = (n10 - n01) / n
    se = math.sqrt(max(discordant - (n10 - n01) ** 2 / n, 0.0)) / n
    z = z_quantile(cl)
    if n01:
        odds = n10 / n01
    else:
        odds = math.inf if n10 else math.nan
    return McNemarResult(
        statistic=float(res.statistic),
        p_value=float(min(res.pvalue, 1.0)),
        method=method,
        effect_size=odds,
        effect_size_name="odds_ratio",
        estimate=diff,
        estimate_name="difference_in_proportions",
        ci_low=max(diff - z * se, -1.0),
        ci_high=min(diff + z * se, 1.0),
        confidence_level=cl,
        n=n,
        n11=n11,
        n10=n10,
        n01=n01,
        n00=n00,
    )


def mcnemar_test(
    data: Any = None,
    a: Any = None,
    b: Any = None,
    *,
    truth: Any = None,
    exact: bool | None = None,
    correction: bool = True,
    confidence_level: float = 0.95,
) -> McNemarResult:
    """McNemar's test for two paired binary outcomes per case (e.g. two readers, two methods).

    Call as ``mcnemar_test(df, a="reader_osem", b="reader_dl")`` or ``mcnemar_test(x, y)``. With
    ``truth`` (a column name or an array), each decision is first turned into correct / incorrect
    (``a == truth``), so the test compares the two accuracies. See :func:`mcnemar_from_table`.
    """
    ra, rb, la, lb = resolve_pair(data, a, b)
    x = as_binary(ra, "a" if la == "a" else f"a ({la!r})")
    y = as_binary(rb, "b" if lb == "b" else f"b ({lb!r})")
    if x.size != y.size:
        raise InputError(f"a, b: paired decisions must have equal lengths, found {x.size} and {y.size}")
    if truth is not None:
        if isinstance(truth, str):
            t = as_binary(column(data, truth, "truth"), f"truth ({truth!r})")
        else:
            t = as_binary(truth, "truth")
        if t.size != x.size:
            raise InputError(f"truth: expected {x.size} values (one per case), found {t.size}")
        x, y = x == t, y == t
    table = [[int(np.sum(x & y)), int(np.sum(x & ~y))], [int(np.sum(~x & y)), int(np.sum(~x & ~y))]]
    return mcnemar_from_table(table, exact=exact, correction=correction, confidence_level=confidence_level)
