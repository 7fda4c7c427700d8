import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats import paired_t_test, rm_anova, tukey_hsd

# statsmodels' AnovaRM test data (statsmodels/stats/tests/results/anova-rm-test-data.csv, rows
# 0-15: within factor B at levels a and b, 8 subjects). statsmodels' test_anova_rm.py reproduces
# R ez::ezANOVA: F(1, 7) = 22.4, p = 0.002125452.
EZ = pd.DataFrame(
    {
        "id": list(range(1, 9)) * 2,
        "B": ["a"] * 8 + ["b"] * 8,
        "DV": [7, 3, 6, 6, 5, 8, 6, 7, 7, 11, 9, 11, 10, 10, 11, 11],
    }
)

# statisticstextbook.com, "Repeated-Measures ANOVA" worked example: 8 participants (rows) in 4
# conditions (columns). Published sums of squares: total 611.96875, conditions 435.84375,
# subjects 162.71875, so error = 13.40625 on (8 - 1)(4 - 1) = 21 df.
QUIZ = np.array(
    [[70, 74, 75, 81], [73, 75, 78, 82], [68, 73, 73, 78], [74, 79, 81, 85],
     [71, 74, 78, 82], [70, 72, 76, 78], [73, 77, 80, 84], [74, 77, 80, 84]],
    dtype=float,
)
SS_COND, SS_ERR = 435.84375, 611.96875 - 435.84375 - 162.71875


def test_rm_anova_reproduces_ezanova_long_table():
    r = rm_anova(EZ, value="DV", subject="id", condition="B")
    assert (r.df_num, r.df_den) == (1, 7)
    assert r.statistic == pytest.approx(22.4, abs=1e-5)
    assert r.p_value == pytest.approx(0.002125452, abs=1e-9)
    assert r.effect_size == pytest.approx(22.4 / (22.4 + 7))
    assert r.conditions == ("a", "b")


def test_rm_anova_reproduces_published_sums_of_squares_wide_table():
    df = pd.DataFrame(QUIZ, columns=["C1", "C2", "C3", "C4"])
    r = rm_anova(df, columns=["C1", "C2", "C3", "C4"])
    f = (SS_COND / 3) / (SS_ERR / 21)
    assert r.statistic == pytest.approx(f, rel=1e-9)
    assert r.p_value == pytest.approx(stats.f.sf(f, 3, 21), rel=1e-6)
    assert r.effect_size == pytest.approx(SS_COND / (SS_COND + SS_ERR), rel=1e-9)
    assert r.means == pytest.approx((71.625, 75.125, 77.625, 81.75))
    # the long form of the same table gives the same answer
    long = df.assign(case=range(8)).melt(id_vars="case", var_name="cond", value_name="score")
    assert rm_anova(long, value="score", subject="case", condition="cond").statistic == pytest.approx(f)


def test_repeated_tukey_uses_published_error_term():
    res = tukey_hsd(QUIZ)
    ms = SS_ERR / 21
    assert res.ms_error == pytest.approx(ms) and res.df_error == 21
    se = np.sqrt(ms / 8)
    c = res.comparison("3", "0")
    assert c.difference == pytest.approx(10.125)
    assert c.statistic == pytest.approx(10.125 / se)
    q_crit = (c.ci_high - c.ci_low) / (2 * se)
    # Harter (1960) tables of the studentized range, k = 4, alpha = 0.05: q = 3.96 at 20 df, 3.90 at 24
    assert 3.90 < q_crit < 3.96
    assert q_crit == pytest.approx(stats.studentized_range.ppf(0.95, 4, 21), rel=1e-6)
    assert len(res.comparisons) == 6


def test_repeated_tukey_with_two_conditions_equals_paired_t():
    # With k = 2 the studentized range is sqrt(2)|t|: Tukey p-value and interval equal the paired t-test's.
    x, y = QUIZ[:, 0], QUIZ[:, 2] + np.array([0.5, -1, 2, 0, 1, -0.5, 0, 1.5])
    c = tukey_hsd({"x": x, "y": y}).comparisons[0]
    t = paired_t_test(x, y)
    assert c.p_value == pytest.approx(t.p_value, rel=1e-5)
    assert (c.ci_low, c.ci_high) == pytest.approx(t.ci, rel=1e-5)


def test_independent_tukey_matches_scipy_doc_example_and_statsmodels():
    # scipy.stats.tukey_hsd documentation example (headache relief times, minutes):
    # (0 - 1) -4.600, p 0.014, CI (-8.249, -0.951); (0 - 2) -0.260, p 0.980; (1 - 2) 4.340, p 0.020
    g = {
        "0": [24.5, 23.5, 26.4, 27.1, 29.9],
        "1": [28.4, 34.2, 29.5, 32.2, 30.1],
        "2": [26.1, 28.3, 24.3, 26.2, 27.8],
    }
    res = tukey_hsd(g, repeated=False)
    c01, c02, c12 = res.comparisons
    assert (c01.difference, c01.p_value) == pytest.approx((-4.600, 0.014), abs=5e-4)
    assert (c01.ci_low, c01.ci_high) == pytest.approx((-8.249, -0.951), abs=5e-4)
    assert (c02.difference, c02.p_value) == pytest.approx((-0.260, 0.980), abs=5e-4)
    assert (c12.difference, c12.p_value) == pytest.approx((4.340, 0.020), abs=5e-4)
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    values = np.concatenate(list(g.values()))
    groups = np.repeat(list(g.keys()), 5)
    sm = pairwise_tukeyhsd(values, groups)
    # statsmodels reports group2 - group1
    np.testing.assert_allclose([c.p_value for c in res.comparisons], sm.pvalues, atol=1e-3)
    np.testing.assert_allclose([-c.difference for c in res.comparisons], sm.meandiffs, atol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rm_anova(EZ.iloc[1:], value="DV", subject="id", condition="B"), "complete"),
        (lambda: rm_anova(pd.concat([EZ, EZ.iloc[:1]]), value="DV", subject="id", condition="B"), "repeated"),
        (lambda: rm_anova(EZ, value="DV", subject="id"), "all three"),
        (lambda: rm_anova(QUIZ[:, :1]), "at least 2 conditions"),
        (lambda: rm_anova({"a": [1.0, 2.0, 3.0], "b": [2.0, 3.0, 4.0]}), "residual"),
        (lambda: rm_anova({"a": [1.0, 2.0, 3.0], "b": [2.0, 3.0]}), "lengths"),
        (lambda: rm_anova({"a": [1.0, np.nan, 3.0], "b": [2.0, 3.0, 5.0]}), "NaN"),
        (lambda: tukey_hsd({"a": [1.0, 2.0, 3.0], "b": [2.0, 3.0, 4.0]}), "residual"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
