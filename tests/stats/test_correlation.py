import numpy as np
import pytest

from spectdl.errors import InputError
from spectdl.stats import correlation, linear_fit, pearson, spearman

# Anscombe FJ. Graphs in statistical analysis. Am Stat 1973;27:17-21, data set I. Published:
# regression line y = 3.00 + 0.500 x, correlation 0.816, r² = 0.67; standard errors of the
# estimates 1.125 (intercept) and 0.118 (slope).
ANS_X = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
ANS_Y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]


def test_pearson_anscombe_and_fisher_interval():
    r = pearson({"x": ANS_X, "y": ANS_Y}, x="x", y="y")
    assert r.statistic == pytest.approx(0.816, abs=5e-4)
    # Fisher z by hand: tanh(atanh(r) ± 1.959964 / sqrt(11 - 3))
    z = np.arctanh(r.statistic)
    half = 1.959963984540054 / np.sqrt(8)
    assert r.ci == pytest.approx((np.tanh(z - half), np.tanh(z + half)), rel=1e-9)
    assert r.p_value == pytest.approx(0.00217, abs=1e-5)  # statsmodels OLS of Anscombe I: P>|t| = 0.002


def test_linear_fit_anscombe_against_statsmodels_ols():
    import statsmodels.api as sm

    fit = linear_fit(ANS_X, ANS_Y)
    assert fit.slope == pytest.approx(0.500, abs=5e-4)
    assert fit.intercept == pytest.approx(3.00, abs=5e-3)
    assert fit.r_squared == pytest.approx(0.67, abs=5e-3)
    assert fit.slope_stderr == pytest.approx(0.118, abs=5e-4)
    assert fit.intercept_stderr == pytest.approx(1.125, abs=5e-4)
    ols = sm.OLS(np.asarray(ANS_Y), sm.add_constant(np.asarray(ANS_X, float))).fit()
    ci = ols.conf_int(0.05)
    assert (fit.intercept_ci_low, fit.intercept_ci_high) == pytest.approx(tuple(ci[0]), rel=1e-9)
    assert (fit.slope_ci_low, fit.slope_ci_high) == pytest.approx(tuple(ci[1]), rel=1e-9)
    assert fit.predict([0.0, 10.0]) == pytest.approx([fit.intercept, fit.intercept + 10 * fit.slope])


def test_spearman_scipy_documented_example_and_interval():
    # scipy.stats.spearmanr documentation: spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    # -> statistic 0.8207826816681233, pvalue 0.0885870053135438
    r = correlation([1, 2, 3, 4, 5], [5, 6, 7, 8, 7], method="spearman")
    assert r.statistic == pytest.approx(0.8207826816681233, rel=1e-12)
    assert r.p_value == pytest.approx(0.0885870053135438, rel=1e-9)
    # Bonett & Wright (2000): SE of atanh(rho) = sqrt((1 + rho²/2) / (n - 3))
    z, se = np.arctanh(r.statistic), np.sqrt((1 + r.statistic**2 / 2) / 2)
    assert r.ci == pytest.approx((np.tanh(z - 1.959964 * se), np.tanh(z + 1.959964 * se)), abs=1e-6)


def test_spearman_is_rank_invariant():
    x = np.array([0.3, 1.2, 2.2, 3.9, 4.1, 7.0])
    y = np.array([1.0, 0.5, 2.0, 3.0, 3.5, 6.0])
    assert spearman(x, y).statistic == pytest.approx(spearman(np.exp(x), y**3).statistic)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: pearson([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]), "constant"),
        (lambda: spearman([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]), "constant"),
        (lambda: pearson([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]), "at least 4"),
        (lambda: pearson([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0]), "equal lengths"),
        (lambda: pearson([1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 4.0, 3.0]), "NaN"),
        (lambda: linear_fit([2.0, 2.0, 2.0], [1.0, 2.0, 4.0]), "slope"),
        (lambda: linear_fit([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]), "R²"),
        (lambda: correlation([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0], method="kendall"), "method"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
