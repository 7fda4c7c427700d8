"""bland_altman_plot, metric_boxplot, roc_plot and sphere_table."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectdl.errors import InputError
from spectdl.report import bland_altman_plot, metric_boxplot, roc_plot, sphere_table
from spectdl.stats import bland_altman, roc_analysis

WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_plot_draws_bias_and_limits(tmp_path, render):
    fig = bland_altman_plot(pd.DataFrame({"wright": WRIGHT, "mini": MINI}), a="wright", b="mini")
    render(fig, tmp_path / "ba.png")
    r = bland_altman(WRIGHT, MINI)
    levels = sorted(line.get_ydata()[0] for line in fig.axes[0].lines)
    assert levels == pytest.approx(sorted([r.bias, r.loa_low, r.loa_high]))
    assert fig.axes[0].get_ylabel() == "wright − mini"
    # a precomputed result draws the same lines
    fig2 = bland_altman_plot(r)
    assert sorted(line.get_ydata()[0] for line in fig2.axes[0].lines) == pytest.approx(levels)


def test_metric_boxplot_annotates_the_paired_p_value(tmp_path, render):
    rng = np.random.default_rng(0)
    base = rng.normal(30, 3, 12)
    unet = base + 1.0 + rng.normal(0, 0.8, 12)
    df = pd.DataFrame({"input": base, "unet": unet, "gan": base + rng.normal(0, 1, 12)})
    fig = metric_boxplot(df, ylabel="PSNR (dB)")
    render(fig, tmp_path / "box.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    p_unet = stats.wilcoxon(df["input"], df["unet"]).pvalue
    p_gan = stats.wilcoxon(df["input"], df["gan"]).pvalue
    expected = ["p < 0.001" if p < 0.001 else f"p = {p:.3f}" for p in (p_unet, p_gan)]
    assert texts == expected
    fig_t = metric_boxplot(df, ["input", "gan"], test="t", pairs=[("gan", "input")])
    assert fig_t.axes[0].texts[0].get_text() == f"p = {stats.ttest_rel(df['gan'], df['input']).pvalue:.3f}"
    with pytest.raises(InputError, match="pairs"):
        metric_boxplot(df, ["input", "gan"], pairs=[("input", "unet")])


def test_metric_boxplot_draws_identical_pairs_without_a_p_value(tmp_path, render):
    df = pd.DataFrame({"osem": [20.0, 21.0], "same": [20.0, 21.0], "other": [18.0, 25.0]})
    fig = metric_boxplot(df, ylabel="PSNR (dB)")
    render(fig, tmp_path / "box.png")
    # osem vs same: every difference is zero, the signed-rank test is undefined: no bracket for it.
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [f"p = {stats.wilcoxon(df['osem'], df['other']).pvalue:.3f}"]


def test_roc_plot(tmp_path, render):
    truth = np.r_[np.ones(20), np.zeros(25)]
    score = truth + np.sin(np.arange(45.0))
    r1, r2 = roc_analysis(truth, score), roc_analysis(truth, score + np.cos(3.0 * np.arange(45)))
    fig = roc_plot({"reader 1": r1, "reader 2": r2})
    render(fig, tmp_path / "roc.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith(f"reader 1: AUC {r1.auc:.3f}")
    with pytest.raises(InputError, match="RocResult"):
        roc_plot({"x": 0.9})


def _nema_table():
    rows = []
    for method, gain in (("OSEM", 0.6), ("U-Net", 0.75)):
        for d in (10, 13, 17, 22, 28, 37):
            crc = gain * (1 - np.exp(-d / 10))
            rows.append(
                {"method": method, "diameter_mm": d, "suv_max": 5 * crc, "suv_mean": 4 * crc, "crc": crc}
            )
    return pd.DataFrame(rows)


def test_sphere_table(tmp_path, render):
    df = _nema_table()
    fig = sphere_table(df, plot="crc", title="NEMA IEC")
    render(fig, tmp_path / "spheres.png")
    cells = fig.axes[0].tables[0].get_celld()
    assert cells[(0, 1)].get_text().get_text() == "OSEM\nsuv_max"
    assert cells[(1, 0)].get_text().get_text() == "10"
    assert cells[(6, 6)].get_text().get_text() == f"{0.75 * (1 - np.exp(-3.7)):.2f}"
    render(sphere_table(df[df.method == "OSEM"].drop(columns="method"), method=None), tmp_path / "one.png")
    with pytest.raises(InputError, match="missing column"):
        sphere_table(df.drop(columns="crc"))
    with pytest.raises(InputError, match="more than one row"):
        sphere_table(pd.concat([df, df.iloc[:1]]))
