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
