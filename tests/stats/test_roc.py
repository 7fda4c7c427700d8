import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from spectdl.errors import InputError
from spectdl.stats import delong_test, roc_analysis
from spectdl.stats.roc import delong_placements

# Hanley JA, McNeil BJ. The meaning and use of the area under a ROC curve. Radiology
# 1982;143:29-36, Table 1: CT images rated 1 (definitely normal) .. 5 (definitely abnormal) by
# a radiologist; 58 normal, 51 abnormal. Published: area 0.893, standard error 0.032.
NORMAL = [33, 6, 6, 11, 2]
ABNORMAL = [3, 2, 2, 11, 33]
TRUTH = np.r_[np.zeros(58), np.ones(51)]
RATING = np.r_[np.repeat(np.arange(1, 6), NORMAL), np.repeat(np.arange(1, 6), ABNORMAL)]


def test_auc_and_se_hanley_mcneil_1982():
    r = roc_analysis(pd.DataFrame({"abnormal": TRUTH, "rating": RATING}), truth="abnormal", score="rating")
    assert r.auc == pytest.approx(0.893, abs=5e-4)
    assert r.auc == pytest.approx(roc_auc_score(TRUTH, RATING), rel=1e-12)
    # DeLong's and Hanley-McNeil's standard errors are different estimators of the same quantity
    assert r.standard_error == pytest.approx(0.032, abs=0.002)
    half = 1.959964 * r.standard_error
    assert r.ci == pytest.approx((r.auc - half, r.auc + half), abs=1e-6)
    assert (r.n_positive, r.n_negative) == (51, 58)
    fpr, tpr, _ = roc_curve(TRUTH, RATING)
    np.testing.assert_allclose(r.fpr, fpr)
    np.testing.assert_allclose(r.tpr, tpr)


def test_delong_variance_hand_derived_example():
    # positives X = 0.9, 0.6, 0.4; negatives Y = 0.7, 0.4, 0.2 (one tie, psi = 1/2).
    # V10 = (1, 2/3, 1/2), V01 = (1/3, 5/6, 1); AUC = 13/18;
    # S10 = 7/108, S01 = 13/108; Var = S10/3 + S01/3 = 5/81.
    truth = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    score = np.array([0.9, 0.6, 0.4, 0.7, 0.4, 0.2])
    v10, v01 = delong_placements(truth, score)
    np.testing.assert_allclose(v10, [1, 2 / 3, 1 / 2])
    np.testing.assert_allclose(v01, [1 / 3, 5 / 6, 1])
    r = roc_analysis(truth, score)
    assert r.auc == pytest.approx(13 / 18)
    assert r.standard_error == pytest.approx(np.sqrt(5 / 81))
    assert r.ci_high == 1.0  # 13/18 + 1.96 * 0.248 is clipped to 1


def test_bootstrap_interval_is_seeded_and_close_to_delong():
    a = roc_analysis(TRUTH, RATING, ci="bootstrap", n_resamples=1000, seed=7)
    b = roc_analysis(TRUTH, RATING, ci="bootstrap", n_resamples=1000, seed=7)
    c = roc_analysis(TRUTH, RATING, ci="bootstrap", n_resamples=1000, seed=8)
    assert a.ci == b.ci
    assert a.ci != c.ci
    assert a.ci_low < a.auc < a.ci_high
    assert a.standard_error == pytest.approx(roc_analysis(TRUTH, RATING).standard_error, abs=0.004)


def _brute_force_delong_z(t, sa, sb):
    pos, neg = np.flatnonzero(t), np.flatnonzero(~t)

    def psi(s):
        d = s[pos][:, None] - s[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    pa, pb = psi(sa), psi(sb)
    v10 = np.vstack([pa.mean(1), pb.mean(1)])
    v01 = np.vstack([pa.mean(0), pb.mean(0)])
    s = np.cov(v10) / pos.size + np.cov(v01) / neg.size
    diff = pa.mean() - pb.mean()
    return diff, diff / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def test_delong_test_matches_brute_force_and_is_antisymmetric():
    rng = np.random.default_rng(3)
    t = np.r_[np.ones(15), np.zeros(20)].astype(bool)
    sa = t * 1.0 + rng.normal(0, 1, 35)
    sb = t * 0.4 + rng.normal(0, 1, 35) + 0.3 * sa
    r = delong_test(t, sa, sb)
    diff, z = _brute_force_delong_z(t, sa, sb)
    assert r.estimate == pytest.approx(diff)
    assert r.statistic == pytest.approx(z)
    assert r.estimate == pytest.approx(roc_auc_score(t, sa) - roc_auc_score(t, sb))
    swapped = delong_test(pd.DataFrame({"t": t, "a": sa, "b": sb}), truth="t", score_a="b", score_b="a")
    assert swapped.statistic == pytest.approx(-r.statistic)
    assert swapped.p_value == pytest.approx(r.p_value)
    same = delong_test(t, sa, sa)
    assert (same.statistic, same.p_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: roc_analysis([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4]), "at least 2 positive and 2 negative"),
        (lambda: roc_analysis([1, 0, 2, 0], [0.1, 0.2, 0.3, 0.4]), "binary"),
        (lambda: roc_analysis([1, 0, 1, 0], [0.1, 0.2, 0.3]), "one score per case"),
        (lambda: roc_analysis([1, 0, 1, 0], [0.1, np.nan, 0.3, 0.2]), "NaN"),
        (lambda: roc_analysis([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.2], ci="wald"), "ci"),
        (lambda: roc_analysis([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.2], ci="bootstrap", n_resamples=10),
         "n_resamples"),
        (lambda: roc_analysis([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.2], ci="bootstrap", seed=0.5), "seed"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
