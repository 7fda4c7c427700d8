import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectdl.errors import InputError
from spectdl.stats import bootstrap_ci

VALUES = np.random.default_rng(11).normal(30.0, 2.0, 60)


def test_bootstrap_mean_interval_agrees_with_t_interval():
    r = bootstrap_ci(pd.DataFrame({"psnr": VALUES}), "psnr", n_resamples=4000, seed=1)
    t = stats.ttest_1samp(VALUES, 0.0).confidence_interval(0.95)
    assert r.estimate == pytest.approx(VALUES.mean())
    # for n = 60 roughly normal values the percentile and t intervals agree to a few per cent of their width
    width = t.high - t.low
    assert r.ci_low == pytest.approx(t.low, abs=0.08 * width)
    assert r.ci_high == pytest.approx(t.high, abs=0.08 * width)
    # the bootstrap SE of the mean tends to s_(n) / sqrt(n) (plug-in SD, denominator n)
    assert r.standard_error == pytest.approx(VALUES.std(ddof=0) / np.sqrt(60), rel=0.06)


def test_bootstrap_is_reproducible_from_its_seed():
    a = bootstrap_ci(VALUES, n_resamples=500, seed=5, statistic=np.median)
    b = bootstrap_ci(VALUES, n_resamples=500, seed=5, statistic=np.median)
    c = bootstrap_ci(VALUES, n_resamples=500, seed=6, statistic=np.median)
    assert a == b
    assert a.ci != c.ci
    assert a.estimate == pytest.approx(np.median(VALUES))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_resamples": 50}, "n_resamples"),
        ({"method": "studentized"}, "method"),
        ({"seed": 1.5}, "seed"),
        ({"confidence_level": 95}, "confidence_level"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        bootstrap_ci(VALUES, **kwargs)


def test_bca_on_a_degenerate_sample_raises():
    with pytest.raises(InputError, match="percentile"):
        bootstrap_ci(np.ones(10), method="bca", n_resamples=200)
