import numpy as np
import pandas as pd
import pytest

from spectdl.errors import InputError
from spectdl.stats import diagnostic_accuracy, mcnemar_from_table, mcnemar_test, wilson_interval


# Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven
# methods. Stat Med 1998;17:857-872, Table II, method 3 (Wilson score, no continuity correction).
@pytest.mark.parametrize(
    "k, n, lo, hi",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe_1998(k, n, lo, hi):
    p = wilson_interval(k, n)
    assert p.estimate == pytest.approx(k / n)
    assert p.ci_low == pytest.approx(lo, abs=5e-5)
    assert p.ci_high == pytest.approx(hi, abs=5e-5)


def test_wilson_interval_matches_closed_form():
    # (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 2.5758 for 99 %
    k, n, z = 7, 19, 2.5758293035489
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(k, n, 0.99).ci == pytest.approx((centre - half, centre + half), rel=1e-9)


def test_diagnostic_accuracy_counts_and_intervals():
    # 263 diseased with 81 called positive, 148 healthy with 15 called negative: sensitivity and
    # specificity are the first two Newcombe examples above.
    truth = np.r_[np.ones(263), np.zeros(148)].astype(bool)
    called = np.r_[np.ones(81), np.zeros(182), np.zeros(15), np.ones(133)].astype(bool)
    df = pd.DataFrame({"disease": truth, "reader": called})
    r = diagnostic_accuracy(df, truth="disease", decision="reader")
    assert (r.tp, r.fn, r.tn, r.fp) == (81, 182, 15, 133)
    assert r.sensitivity.ci == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert r.specificity.ci == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert r.accuracy.estimate == pytest.approx(96 / 411)
    assert r.ppv.estimate == pytest.approx(81 / 214)
    assert r.npv.estimate == pytest.approx(15 / 197)
    row = r.to_dict()
    assert row["sensitivity_ci_high"] == pytest.approx(0.3662, abs=5e-5)


def test_diagnostic_accuracy_without_positive_calls_has_no_ppv():
    r = diagnostic_accuracy([1, 0, 1, 0], [0, 0, 0, 0])
    assert r.ppv is None and r.npv.estimate == 0.5
    assert r.sensitivity.estimate == 0.0


# Agresti, An Introduction to Categorical Data Analysis (2nd ed., 2007), Table 8.1: approval of
# the President's performance in two surveys of the same 1600 people: 794 approve/approve,
# 150 approve/disapprove, 86 disapprove/approve, 570 disapprove/disapprove. Agresti reports
# z = -4.17 (z² = 17.36), P < 0.001, and the difference 0.59 - 0.55 = 0.04 with 95 % CI (0.021, 0.059).
APPROVAL = [[794, 150], [86, 570]]


def test_mcnemar_agresti_presidential_approval():
    r = mcnemar_from_table(APPROVAL, exact=False, correction=False)
    assert r.method == "chi2"
    assert r.statistic == pytest.approx(64**2 / 236)  # (150 - 86)² / (150 + 86) = 17.356
    assert r.statistic == pytest.approx(4.17**2, abs=0.05)
    assert r.p_value < 0.001
    assert r.estimate == pytest.approx(0.04)
    assert r.ci == pytest.approx((0.021, 0.059), abs=6e-4)
    assert r.effect_size == pytest.approx(150 / 86)


def test_mcnemar_continuity_correction_and_exact():
    corrected = mcnemar_from_table(APPROVAL)  # 236 discordant pairs: chi-square with Edwards' correction
    assert corrected.method == "chi2_corrected"
    assert corrected.statistic == pytest.approx(63**2 / 236)
    # exact: 1 vs 9 discordant pairs, two-sided binomial p = 2 (C(10,0) + C(10,1)) / 2^10 = 22/1024
    exact = mcnemar_from_table([[20, 1], [9, 30]])
    assert exact.method == "exact"
    assert exact.p_value == pytest.approx(22 / 1024)
    assert exact.statistic == 1


def test_mcnemar_from_per_case_decisions_and_truth():
    a = np.r_[np.ones(794), np.ones(150), np.zeros(86), np.zeros(570)]
    b = np.r_[np.ones(794), np.zeros(150), np.ones(86), np.zeros(570)]
    r = mcnemar_test(pd.DataFrame({"s1": a, "s2": b}), a="s1", b="s2", exact=False, correction=False)
    assert (r.n11, r.n10, r.n01, r.n00) == (794, 150, 86, 570)
    assert r.statistic == pytest.approx(64**2 / 236)
    # with truth, decisions become correct / incorrect: here truth = a, so a is always correct
    truth = a.copy()
    r2 = mcnemar_test(a, b, truth=truth)
    assert (r2.n11, r2.n10, r2.n01, r2.n00) == (1364, 236, 0, 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: wilson_interval(3, 0), "n"),
        (lambda: wilson_interval(5, 4), "successes"),
        (lambda: diagnostic_accuracy([1, 1, 1], [1, 0, 1]), "both classes"),
        (lambda: diagnostic_accuracy([1, 0, 2], [1, 0, 1]), "binary"),
        (lambda: diagnostic_accuracy([1, 0, 1], [1, 0]), "one decision per case"),
        (lambda: mcnemar_from_table([[5, 0], [0, 5]], exact=False), "discordant"),
        (lambda: mcnemar_from_table([[1, 2, 3]]), "shape"),
        (lambda: mcnemar_from_table([[1, -2], [3, 4]]), "non-negative"),
        (lambda: mcnemar_test([1, 0, 1], [1, 0]), "equal lengths"),
        (lambda: mcnemar_test([1, 0, np.nan], [1, 0, 1]), "NaN"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
