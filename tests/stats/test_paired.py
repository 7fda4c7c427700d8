import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats import hodges_lehmann, paired_t_test, paired_test, wilcoxon_test
from spectdl.stats.paired import _signed_rank_null_cdf

# Fisher's corn data (Darwin's height differences, cross- minus self-fertilised), the example of
# the scipy.stats.wilcoxon documentation: statistic 24.0, p-value 0.041259765625 (two-sided, exact).
CORN = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)

# Hamilton depression scale, first (x) and second (y) visits: Hollander & Wolfe (1973) p. 29,
# the example of R's ?wilcox.test: paired, alternative = "greater" gives V = 40, p-value = 0.01953.
HW_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
HW_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]

# Student's sleep data (Cushny & Peebles 1905; R dataset `sleep`). R: t.test(extra ~ group,
# data = sleep, paired = TRUE) -> t = -4.0621, df = 9, p-value = 0.002833,
# 95 percent CI -2.4598858 -0.7001142, mean difference -1.58.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_wilcoxon_matches_scipy_documented_example():
    r = wilcoxon_test(CORN, np.zeros_like(CORN))
    assert r.statistic == 24.0
    assert r.p_value == pytest.approx(0.041259765625, rel=1e-12)
    # hand: negative ranks are 10 (-48) and 14 (-67), so T- = 24, T+ = 120 - 24 = 96 and
    # r = (96 - 24) / 120 = 0.6 (Kerby 2014 simple difference formula)
    assert r.effect_size == pytest.approx(0.6)
    assert r.n == 15


def test_wilcoxon_hollander_wolfe_depression_data():
    r = wilcoxon_test(HW_X, HW_Y, alternative="greater")
    assert r.statistic == 40.0  # R: V = 40
    assert r.p_value == pytest.approx(0.01953, abs=5e-6)  # R: p-value = 0.01953 (= 10/512)
    assert r.effect_size == pytest.approx((40 - 5) / 45)  # T+ = 40, T- = 45 - 40 = 5
    # Hollander & Wolfe: Hodges-Lehmann estimate of the shift, theta-hat = 0.46
    assert r.estimate == pytest.approx(0.46, abs=1e-9)


def test_signed_rank_null_distribution_matches_enumeration():
    n = 10
    patterns = itertools.product((0, 1), repeat=n)
    sums = [sum(r for r, s in zip(range(1, n + 1), signs) if s) for signs in patterns]
    counts = np.bincount(sums, minlength=n * (n + 1) // 2 + 1)
    np.testing.assert_allclose(_signed_rank_null_cdf(n), np.cumsum(counts) / 2**n, rtol=0, atol=1e-15)


def _two_sided_p(d, theta, method):
    return stats.wilcoxon(d - theta, method=method, correction=(method == "approx")).pvalue


@pytest.mark.parametrize("n, method", [(12, "exact"), (60, "approx")])
def test_hodges_lehmann_interval_inverts_the_signed_rank_test(n, method):
    # Independent reference: the interval is the set of shifts the scipy test does not reject.
    d = np.random.default_rng(n).normal(0.3, 1.0, n)
    est, lo, hi = hodges_lehmann(d, 0.95)
    i, j = np.triu_indices(n)
    assert est == pytest.approx(np.median((d[i] + d[j]) / 2))
    eps = 1e-9
    assert _two_sided_p(d, lo - eps, method) <= 0.05
    assert _two_sided_p(d, lo + eps, method) > 0.05
    assert _two_sided_p(d, hi + eps, method) <= 0.05
    assert _two_sided_p(d, hi - eps, method) > 0.05


def test_hodges_lehmann_interval_is_infinite_when_level_unreachable():
    # n = 5: the smallest two-sided exact p-value is 2/32 = 0.0625 > 0.05
    _, lo, hi = hodges_lehmann(np.array([1.0, 2.0, 3.0, 4.0, 5.5]), 0.95)
    assert lo == -np.inf and hi == np.inf


def test_paired_t_matches_r_sleep_data():
    r = paired_t_test(SLEEP_1, SLEEP_2)
    assert r.statistic == pytest.approx(-4.0621, abs=1e-4)
    assert r.df == 9
    assert r.p_value == pytest.approx(0.002833, abs=1e-6)
    assert r.estimate == pytest.approx(-1.58)
    assert r.ci == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)
    # Cohen's d_z = t / sqrt(n)
    assert r.effect_size == pytest.approx(-4.0621277 / np.sqrt(10), abs=1e-6)


def test_table_dict_tensor_and_array_inputs_agree():
    df = pd.DataFrame({"psnr_input": SLEEP_1, "psnr_enhanced": SLEEP_2})
    ref = paired_test(SLEEP_1, SLEEP_2, test="t")
    from_df = paired_test(df, a="psnr_input", b="psnr_enhanced", test="t")
    from_dict = paired_test({"u": SLEEP_1, "v": SLEEP_2}, "u", "v", test="t")
    from_tensor = paired_test(torch.tensor(SLEEP_1), torch.tensor(SLEEP_2), test="t")
    for r in (from_df, from_dict, from_tensor):
        assert r.statistic == pytest.approx(ref.statistic)
        assert r.ci == pytest.approx(ref.ci)
    assert (from_df.label_a, from_df.label_b) == ("psnr_input", "psnr_enhanced")
    assert paired_test(df, a="psnr_input", b="psnr_enhanced").test == "wilcoxon"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: paired_test([1.0, 2.0, 3.0], [1.0, 2.0]), "equal lengths"),
        (lambda: paired_test([1.0, np.nan, 3.0], [1.0, 2.0, 4.0]), "NaN"),
        (lambda: paired_test([], []), "empty"),
        (lambda: paired_test([1.0, 2.0], [1.0, 2.0]), "zero"),
        (lambda: paired_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], test="t"), "zero variance"),
        (lambda: paired_test([1.0, 2.0], [3.0, 4.5], test="sign"), "test"),
        (lambda: paired_test(pd.DataFrame({"a": [1, 2]}), a="a", b="missing"), "missing"),
        (lambda: paired_test([1.0, 2.0], a="a", b="b"), "DataFrame"),
        (lambda: paired_test([1.0, 2.0, 3.0], [2.0, 1.0, 5.0], alternative="bigger"), "alternative"),
        (lambda: paired_test([[1.0, 2.0]], [[1.0, 3.0]]), "1-D"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
