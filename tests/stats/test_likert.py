import numpy as np
import pandas as pd
import pytest

from spectdl.errors import InputError
from spectdl.stats import likert_summary, results_frame


def test_likert_summary_hand_counts_and_pandas_quartiles():
    df = pd.DataFrame({"osem": [1, 2, 3, 3, 4, 2], "dl": [3, 4, 4, 5, 5, 4]})
    osem, dl = likert_summary(df)
    assert osem.name == "osem" and osem.n == 6
    assert osem.counts == (1, 2, 2, 1, 0)
    assert osem.proportions == pytest.approx((1 / 6, 2 / 6, 2 / 6, 1 / 6, 0))
    desc = df["osem"].describe()  # pandas: linear-interpolation quartiles, SD with n - 1
    assert (osem.q1, osem.median, osem.q3) == pytest.approx((desc["25%"], desc["50%"], desc["75%"]))
    assert osem.sd == pytest.approx(desc["std"])
    # hand: sorted 1 2 2 3 3 4 -> median 2.5, mean 15 / 6 = 2.5
    assert osem.median == 2.5 and osem.mean == 2.5
    assert osem.threshold == 3 and osem.at_least == pytest.approx(3 / 6)
    assert dl.at_least == 1.0 and dl.median == 4.0
    frame = results_frame([osem, dl])
    assert list(frame["n_5"]) == [0, 2]


def test_long_table_gives_the_same_summaries():
    wide = pd.DataFrame({"osem": [1, 2, 3, 3, 4, 2], "dl": [3, 4, 4, 5, 5, 4]})
    long = wide.melt(var_name="method", value_name="score")
    a = likert_summary(wide)
    b = likert_summary(long, score="score", by="method")
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: likert_summary({"a": [1, 2, 6]}), "not on the scale"),
        (lambda: likert_summary({"a": [1, 2, np.nan]}), "NaN"),
        (lambda: likert_summary({"a": []}), "empty"),
        (lambda: likert_summary({"a": [1, 2]}, levels=[1]), "levels"),
        (lambda: likert_summary(pd.DataFrame({"s": [1, 2]}), score="s"), "both"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
