import numpy as np
import pandas as pd
import pytest
import torch

from spectdl.errors import InputError
from spectdl.stats import paired_test, results_frame, wilson_interval
from spectdl.stats.tables import as_binary, as_vector, resolve_pair


def test_as_vector_reads_lists_series_and_tensors():
    ref = np.array([1.0, 2.5, 3.0])
    for v in ([1, 2.5, 3], pd.Series(ref), torch.tensor(ref, requires_grad=True), ref.astype(np.float32)):
        np.testing.assert_allclose(as_vector(v, "v"), ref)


def test_as_vector_names_the_argument_and_position_of_a_nan():
    with pytest.raises(InputError, match=r"scores: 1 NaN or infinite value\(s\), first at position 2"):
        as_vector([1.0, 2.0, np.nan], "scores")
    with pytest.raises(InputError, match="numbers"):
        as_vector(["a", "b"], "scores")


def test_as_binary_accepts_bools_and_zero_one_only():
    np.testing.assert_array_equal(as_binary([True, False, 1, 0], "d"), [True, False, True, False])
    with pytest.raises(InputError, match=r"found the values \[0.0, 0.5"):
        as_binary([0, 0.5, 1], "d")


def test_resolve_pair_forms():
    df = pd.DataFrame({"u": [1, 2], "v": [3, 4]})
    assert resolve_pair(df, "u", "v")[2:] == ("u", "v")
    x, y, la, lb = resolve_pair([1, 2], [3, 4], None)
    assert (x, y, la, lb) == ([1, 2], [3, 4], "a", "b")
    x, y, _, _ = resolve_pair(None, [1, 2], [3, 4])
    assert (x, y) == ([1, 2], [3, 4])
    with pytest.raises(InputError, match="two column names or two arrays"):
        resolve_pair(df, "u", [3, 4])
    with pytest.raises(InputError, match=r"available columns: \['u', 'v'\]"):
        resolve_pair(df, "u", "w")


def test_results_frame_has_one_row_per_result():
    rs = {
        "m1": paired_test([1.0, 2.0, 4.0, 3.0, 7.0], [0.5, 2.5, 3.0, 1.0, 5.0]),
        "m2": wilson_interval(3, 10),
    }
    frame = results_frame({"m1": rs["m1"]})
    assert list(frame.index) == ["m1"]
    assert frame.loc["m1", "p_value"] == pytest.approx(rs["m1"].p_value)
    assert results_frame([rs["m2"]]).loc[0, "ci_high"] == pytest.approx(rs["m2"].ci_high)
