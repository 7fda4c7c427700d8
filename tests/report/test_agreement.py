"""linear_fit_plot and linear_fit_figures: per-case values against a reference, from metrics rows."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectdl.report.agreement import linear_fit_figures, linear_fit_plot


def test_linear_fit_plot_draws_each_series_with_its_least_squares_line(tmp_path, render):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 0.25, 10)
    ys = {"a": 1.3 * x + 0.01 + rng.normal(0, 0.005, 10), "b": np.full(10, 0.2)}
    fig = linear_fit_plot(x, ys, title="IMBV")
    ax = fig.axes[0]
    line = ax.lines[0]  # series a's fit; the constant series b has none, then the identity line
    fit = stats.linregress(x, ys["a"])
    xs, yl = line.get_data()
    assert np.allclose(yl, fit.slope * np.asarray(xs) + fit.intercept)
    assert len(ax.lines) == 2 and any("no fit" in t.get_text() for t in ax.get_legend().get_texts())
    render(fig, tmp_path / "fit.png")


def test_linear_fit_figures_pair_cases_from_the_metric_rows(tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"case": f"c{i}", "method": m, "metric": "imbv", "region": "true_masks", "value": v}
            for i in range(5) for m, v in (("iy", 0.1 + 0.02 * i), ("net", 0.12 + 0.02 * i + rng.normal(0, 0.002)))]
    rows.append({"case": "all", "method": "net", "metric": "imbv", "region": "true_masks", "value": 9.0})
    df = pd.DataFrame(rows)
    spec = {"name": "imbv_iy", "metric": "imbv", "x": "iy", "y": ["net", "absent"], "where": {"region": "true_masks"},
            "title": "IMBV against iY"}
    (caption, path), = linear_fit_figures(df, {"linear_fits": [spec]}, tmp_path)
    assert path.name == "fit_imbv_iy.png" and path.is_file() and "5 cases" in caption
    assert linear_fit_figures(df, {"linear_fits": [dict(spec, x="missing")]}, tmp_path) == []
    with pytest.raises(Exception):
        linear_fit_plot(np.array([]), {})


def test_per_case_table_selects_by_metric_and_where_matching_numbers_and_their_text():
    from spectdl.report.agreement import per_case_table

    rows = [{"case": c, "method": m, "metric": met, "iteration": it, "region": reg, "value": v}
            for c, m, met, it, reg, v in [
                ("a", "osem", "mse", 3, "high", 1.0), ("a", "osem", "mse", 5, "high", 2.0),
                ("a", "net", "mse", 3, "high", 4.0), ("b", "osem", "mse", 3, "high", 8.0),
                ("b", "osem", "mse", 3, "background", 16.0), ("a", "osem", "psnr", 3, "high", 32.0),
                ("all", "osem", "mse", 3, "high", 64.0)]]
    df = pd.DataFrame(rows)
    as_text = df.astype({"iteration": str})  # metrics.csv read back without type inference
    for frame, where in ((df, {"iteration": "3", "region": "high"}), (as_text, {"iteration": 3, "region": "high"}),
                         (df, {"iteration": 3, "region": "high", "absent_column": "x"})):
        wide = per_case_table(frame, "mse", where)
        assert wide.loc["a", "osem"] == 1.0 and wide.loc["a", "net"] == 4.0 and wide.loc["b", "osem"] == 8.0
        assert list(wide.index) == ["a", "b"]  # the "all" row is not a case
    # no where: rows that differ only in where columns are averaged by the pivot
    assert per_case_table(df, "mse").loc["b", "osem"] == 12.0
