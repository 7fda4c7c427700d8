import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats import bland_altman

# Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of clinical
# measurement. Lancet 1986;i:307-310, Table 1: peak expiratory flow rate (l/min), first reading
# with the Wright and the mini Wright meter, 17 subjects.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_1986_pefr_published_values():
    df = pd.DataFrame({"wright": WRIGHT, "mini": MINI})
    r = bland_altman(df, a="wright", b="mini", k=2.0, ci_method="approximate")
    # Paper: mean difference -2.1, SD 38.8, limits d ± 2s = -79.7 and 75.5 l/min
    assert r.bias == pytest.approx(-2.1, abs=0.05)
    assert r.sd == pytest.approx(38.8, abs=0.05)
    assert (r.loa_low, r.loa_high) == pytest.approx((-79.7, 75.5), abs=0.1)
    # Paper: 95 % CI of the bias -22.0 to 17.8; of the lower limit -114.3 to -45.1; of the upper
    # limit 40.9 to 110.1 (SE sqrt(3 s²/n) = 16.3, t_16 = 2.12; the paper rounds intermediate values)
    assert r.bias_ci == pytest.approx((-22.0, 17.8), abs=0.1)
    assert r.loa_low_ci == pytest.approx((-114.3, -45.1), abs=0.2)
    assert r.loa_high_ci == pytest.approx((40.9, 110.1), abs=0.2)
    assert r.n == 17 and r.label_a == "wright"


def test_bland_altman_default_limits_use_1_96_sd():
    r = bland_altman(WRIGHT, MINI)
    # the reference: bias -2.1, SD 38.8 -> limits -78 to 74 (d ± 1.96 s)
    assert (r.loa_low, r.loa_high) == pytest.approx((-78.1, 73.9), abs=0.1)
    np.testing.assert_allclose(r.differences, np.subtract(WRIGHT, MINI))
    np.testing.assert_allclose(r.means, (np.add(WRIGHT, MINI)) / 2)


def test_exact_limit_interval_ends_are_one_sided_tolerance_limits():
    # Carkeet (2015): the outer end of the exact interval of the upper limit d + k s is a one-sided
    # normal tolerance limit. Natrella (1963) / NIST e-Handbook §7.2.6.3 tables of one-sided tolerance
    # factors, n = 10, confidence 0.95: K = 2.355 for 90 % coverage and 2.911 for 95 %.
    x = np.array([3.1, 4.7, 2.2, 5.9, 4.4, 3.8, 6.3, 2.9, 5.1, 4.0])
    y = np.zeros(10)
    d = x - y
    for coverage, k_table in ((0.90, 2.355), (0.95, 2.911)):
        r = bland_altman(x, y, k=stats.norm.ppf(coverage), confidence_level=0.90)
        s = d.std(ddof=1)
        assert r.loa_high_ci_high == pytest.approx(d.mean() + k_table * s, abs=5e-4 * s)
        assert r.loa_low_ci_low == pytest.approx(d.mean() - k_table * s, abs=5e-4 * s)
        assert r.loa_low_ci_low < r.loa_low < r.loa_low_ci_high


def test_relative_differences_are_percent_of_the_mean():
    a, b = np.array([10.0, 20.0, 30.0, 45.0]), np.array([12.0, 18.0, 33.0, 40.0])
    r = bland_altman(a, b, relative=True)
    expected = 100 * (a - b) / ((a + b) / 2)
    np.testing.assert_allclose(r.differences, expected)
    assert r.bias == pytest.approx(expected.mean())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bland_altman([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]), "every difference"),
        (lambda: bland_altman([1.0, 2.0, 3.0], [0.0, 1.5, 2.0], k=0), "k"),
        (lambda: bland_altman([1.0, 2.0], [0.0, 1.5]), "at least 3 are needed"),
        (lambda: bland_altman([1.0, 2.0, 3.0], [1.0, 1.5, 2.0, 4.0]), "equal lengths"),
        (lambda: bland_altman([1.0, -2.0, 3.0], [-1.0, 2.5, 2.0], relative=True), "non-zero means"),
        (lambda: bland_altman([1.0, 2.0, 3.0], [0.0, 1.5, 2.0], ci_method="bootstrap"), "ci_method"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
