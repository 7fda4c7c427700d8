"""ROC curves and the area under them, with DeLong or seeded bootstrap intervals.

``truth`` is 1 (or True) for a diseased / lesion-present case; higher ``score`` means more
suspicious. The curve comes from ``sklearn.metrics.roc_curve``; the AUC equals the Mann-Whitney
probability ``P(S+ > S-) + P(S+ = S-)/2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from spectdl.errors import InputError, require
from spectdl.stats._data import Result, check_confidence_level, z_quantile
from spectdl.stats.tables import as_binary, as_vector, column, resolve_pair
from spectdl.stats.bootstrap import check_bootstrap_args, run_bootstrap
from spectdl.stats.paired import PairedTestResult


@dataclass(frozen=True)
class RocResult(Result):
    """ROC curve and AUC with a two-sided ``confidence_level`` interval.

    ``fpr``, ``tpr`` and ``thresholds`` are the curve (``sklearn.metrics.roc_curve``, first
    threshold ``inf``). ``standard_error`` is DeLong's, or the bootstrap standard deviation.
    """

    auc: float
    ci_low: float
    ci_high: float
    standard_error: float
    ci_method: str
    confidence_level: float
    n_positive: int
    n_negative: int
    fpr: np.ndarray = field(default=None, repr=False, compare=False, metadata={"table": False})
    tpr: np.ndarray = field(default=None, repr=False, compare=False, metadata={"table": False})
    thresholds: np.ndarray = field(default=None, repr=False, compare=False, metadata={"table": False})

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


def _truth_scores(data: Any, truth: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    rt, rs, lt, ls = resolve_pair(data, truth, score, ("truth", "score"))
    t = as_binary(rt, "truth" if lt == "truth" else f"truth ({lt!r})")
    s = as_vector(rs, "score" if ls == "score" else f"score ({ls!r})")
    if t.size != s.size:
        raise InputError(
            f"truth, score: expected one score per case, found {t.size} labels and {s.size} scores"
        )
    n_pos = int(t.sum())
    if n_pos < 2 or t.size - n_pos < 2:
        raise InputError(
            f"truth: an ROC analysis needs at least 2 positive and 2 negative cases, found {n_pos} positive "
            f"and {t.size - n_pos} negative"
        )
    return t, s


def delong_placements(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components ``V10`` (one per positive) and ``V01`` (one per negative).

    ``V10_i = (1/n) Σ_j ψ(X_i, Y_j)`` and ``V01_j = (1/m) Σ_i ψ(X_i, Y_j)`` with
    ``ψ(x, y) = 1, 1/2, 0`` for ``x >, =, < y``, computed from mid-ranks (Sun & Xu, IEEE Signal
    Process. Lett. 2014;21:1389): ``V10_i = (R_i - R^X_i) / n`` with ``R`` the rank in the pooled
    sample and ``R^X`` the rank among positives.
    """
    x, y = scores[truth], scores[~truth]
    m, n = x.size, y.size
    pooled = stats.rankdata(np.concatenate([x, y]))
    v10 = (pooled[:m] - stats.rankdata(x)) / n
    v01 = 1.0 - (pooled[m:] - stats.rankdata(y)) / m
    return v10, v01


def delong_variance(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(AUC, Var(AUC))`` with ``Var = S10 / m + S01 / n`` (DeLong, DeLong & Clarke-Pearson,
    Biometrics 1988;44:837-845), ``S10``, ``S01`` the sample variances of the placements."""
    v10, v01 = delong_placements(truth, scores)
    return float(v10.mean()), float(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)


def _auc_stat(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUC along ``axis`` (vectorised for the bootstrap)."""
    pos = np.moveaxis(pos, axis, -1)
    neg = np.moveaxis(neg, axis, -1)
    m, n = pos.shape[-1], neg.shape[-1]
    batch = np.broadcast_shapes(pos.shape[:-1], neg.shape[:-1])
    pos = np.broadcast_to(pos, batch + (m,))
    neg = np.broadcast_to(neg, batch + (n,))
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    return (ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2.0) / (m * n)


def roc_analysis(
    data: Any = None,
    truth: Any = None,
    score: Any = None,
    *,
    ci: str = "delong",
    confidence_level: float = 0.95,
    n_resamples: int = 2000,
    bootstrap_method: str = "percentile",
    seed: int = 0,
) -> RocResult:
    """ROC curve, AUC and its interval.

    Call as ``roc_analysis(df, truth="lesion", score="reader_confidence")`` or
    ``roc_analysis(y_true, y_score)``.

    ``ci="delong"``: ``AUC ± z_{1-α/2} sqrt(Var_DeLong)``, clipped to [0, 1].
    ``ci="bootstrap"``: stratified bootstrap (positives and negatives resampled separately, so
    every resample keeps both classes), ``n_resamples`` draws from a generator seeded with ``seed``.
    """
    t, s = _truth_scores(data, truth, score)
    cl = check_confidence_level(confidence_level)
    metrics = require("sklearn.metrics", "eval")
    fpr, tpr, thr = metrics.roc_curve(t, s)
    auc, var = delong_variance(t, s)
    if ci == "delong":
        se = math.sqrt(max(var, 0.0))
        half = z_quantile(cl) * se
        lo, hi = max(auc - half, 0.0), min(auc + half, 1.0)
    elif ci == "bootstrap":
        n_resamples, method, seed = check_bootstrap_args(n_resamples, bootstrap_method, seed)
        lo, hi, se = run_bootstrap(
            (s[t], s[~t]), _auc_stat, confidence_level=cl, n_resamples=n_resamples, method=method, seed=seed
        )
    else:
        raise InputError(f"ci: expected 'delong' or 'bootstrap', found {ci!r}")
    return RocResult(
        auc=auc,
        ci_low=lo,
        ci_high=hi,
        standard_error=se,
        ci_method=ci,
        confidence_level=cl,
        n_positive=int(t.sum()),
        n_negative=int((~t).sum()),
        fpr=fpr,
        tpr=tpr,
        thresholds=thr,
    )


def delong_test(
    data: Any = None,
    truth: Any = None,
    score_a: Any = None,
    score_b: Any = None,
    *,
    confidence_level: float = 0.95,
) -> PairedTestResult:
    """DeLong's test of two correlated AUCs (two scores, e.g. two readers or methods, on the same cases).

    ``z = (AUC_a - AUC_b) / sqrt(L S L^T)``, ``L = [1, -1]``, ``S = S10 / m + S01 / n`` the 2×2
    covariance of the placements (DeLong et al. 1988). The estimate is ``AUC_a - AUC_b`` with
    the interval ``± z_{1-α/2} sqrt(L S L^T)``.

    Call as ``delong_test(df, truth="lesion", score_a="osem", score_b="dl")`` or
    ``delong_test(y_true, scores_a, scores_b)`` (then pass ``data=None`` or the arrays positionally).
    """
    if isinstance(truth, str) or isinstance(score_a, str) or isinstance(score_b, str):
        for name, val in (("truth", truth), ("score_a", score_a), ("score_b", score_b)):
            if not isinstance(val, str):
                raise InputError(f"{name}: with a table give all three column names, found {val!r}")
        t_raw, a_raw, b_raw = (column(data, c, n) for c, n in ((truth, "truth"), (score_a, "score_a"),
                                                                (score_b, "score_b")))
        la, lb = score_a, score_b
    elif data is not None and score_b is None:
        t_raw, a_raw, b_raw, la, lb = data, truth, score_a, "a", "b"
    else:
        t_raw, a_raw, b_raw, la, lb = truth, score_a, score_b, "a", "b"
    t, sa = _truth_scores(None, t_raw, a_raw)
    _, sb = _truth_scores(None, t_raw, b_raw)
    cl = check_confidence_level(confidence_level)
    va10, va01 = delong_placements(t, sa)
    vb10, vb01 = delong_placements(t, sb)
    s10 = np.cov(np.vstack([va10, vb10]), ddof=1)
    s01 = np.cov(np.vstack([va01, vb01]), ddof=1)
    cov = s10 / va10.size + s01 / va01.size
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    diff = float(va10.mean() - vb10.mean())
    if var <= 1e-15:
        if abs(diff) > 1e-12:
            raise InputError("score_a, score_b: the variance of the AUC difference is zero; z is undefined")
        z, p, se = 0.0, 1.0, 0.0
    else:
        se = math.sqrt(var)
        z = diff / se
        p = float(2.0 * stats.norm.sf(abs(z)))
    half = z_quantile(cl) * se
    return PairedTestResult(
        test="delong",
        statistic=z,
        p_value=p,
        effect_size=diff,
        effect_size_name="auc_difference",
        estimate=diff,
        estimate_name="auc_difference",
        ci_low=diff - half,
        ci_high=diff + half,
        confidence_level=cl,
        n=int(t.size),
        label_a=str(la),
        label_b=str(lb),
    )
