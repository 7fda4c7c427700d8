import os

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread
from scipy import stats

from spectdl.errors import InputError
from spectdl.report import (
    bland_altman_plot,
    image_grid,
    line_profiles,
    metric_boxplot,
    profile_through,
    roc_plot,
    save_png,
    sphere_table,
)
from spectdl.stats import bland_altman, roc_analysis

WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def _render(fig, path):
    """Save, read back and check pixel size and that the picture is not blank."""
    save_png(fig, path)
    img = imread(path)
    w_in, h_in = fig.get_size_inches()
    assert img.shape[:2] == (round(h_in * fig.dpi), round(w_in * fig.dpi))
    assert img.std() > 0
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 1
    return img


def _phantom():
    x, y = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 20), indexing="ij")
    return np.exp(-(x**2 + y**2) * 3)


def test_image_grid_shared_window_and_symmetric_difference(tmp_path):
    ref = _phantom()
    noisy = ref + 0.1 * np.sin(7 * np.arange(24))[:, None]
    images = [noisy, torch.tensor(ref * 1.1)[None, None], ref]
    fig = image_grid(images, ["input", "enhanced", "reference"], difference=(1, 2))
    _render(fig, tmp_path / "grid.png")
    panels = [ax for ax in fig.axes if ax.images]
    lo = min(noisy.min(), ref.min())
    hi = max(noisy.max(), 1.1 * ref.max())
    for ax in panels[:3]:
        assert ax.images[0].get_clim() == pytest.approx((lo, hi))
    lim = np.abs(0.1 * ref).max()
    assert panels[3].images[0].get_clim() == pytest.approx((-lim, lim))
    assert panels[3].get_title() == "enhanced − reference"
    # layout "xy": the [x, y] array is shown transposed (x across, y up)
    np.testing.assert_allclose(panels[2].images[0].get_array(), ref.T)


def test_image_grid_rejects_bad_images():
    with pytest.raises(InputError, match="2-D image"):
        image_grid([np.zeros((2, 3, 4))])
    with pytest.raises(InputError, match="NaN"):
        image_grid([np.full((3, 3), np.nan)])
    with pytest.raises(InputError, match="titles"):
        image_grid([np.zeros((3, 3))], ["a", "b"])
    with pytest.raises(InputError, match="differ in shape"):
        image_grid([np.zeros((3, 3)), np.zeros((3, 4))], difference=(0, 1))


def test_line_profiles(tmp_path):
    ref = _phantom()
    prof = profile_through(ref, y=10)
    np.testing.assert_allclose(prof, ref[:, 10])
    curves = {"reference": prof, "enhanced": torch.tensor(prof * 0.9)}
    fig = line_profiles(curves, positions_mm=np.arange(24) * 4.4)
    _render(fig, tmp_path / "profile.png")
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(24) * 4.4)
    with pytest.raises(InputError, match="positions_mm"):
        line_profiles({"a": prof}, positions_mm=np.arange(5))


def test_bland_altman_plot_draws_bias_and_limits(tmp_path):
    fig = bland_altman_plot(pd.DataFrame({"wright": WRIGHT, "mini": MINI}), a="wright", b="mini")
    _render(fig, tmp_path / "ba.png")
    r = bland_altman(WRIGHT, MINI)
    levels = sorted(line.get_ydata()[0] for line in fig.axes[0].lines)
    assert levels == pytest.approx(sorted([r.bias, r.loa_low, r.loa_high]))
    assert fig.axes[0].get_ylabel() == "wright − mini"
    # a precomputed result draws the same lines
    fig2 = bland_altman_plot(r)
    assert sorted(line.get_ydata()[0] for line in fig2.axes[0].lines) == pytest.approx(levels)


def test_metric_boxplot_annotates_the_paired_p_value(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(30, 3, 12)
    unet = base + 1.0 + rng.normal(0, 0.8, 12)
    df = pd.DataFrame({"input": base, "unet": unet, "gan": base + rng.normal(0, 1, 12)})
    fig = metric_boxplot(df, ylabel="PSNR (dB)")
    _render(fig, tmp_path / "box.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    p_unet = stats.wilcoxon(df["input"], df["unet"]).pvalue
    p_gan = stats.wilcoxon(df["input"], df["gan"]).pvalue
    expected = ["p < 0.001" if p < 0.001 else f"p = {p:.3f}" for p in (p_unet, p_gan)]
    assert texts == expected
    fig_t = metric_boxplot(df, ["input", "gan"], test="t", pairs=[("gan", "input")])
    assert fig_t.axes[0].texts[0].get_text() == f"p = {stats.ttest_rel(df['gan'], df['input']).pvalue:.3f}"
    with pytest.raises(InputError, match="pairs"):
        metric_boxplot(df, ["input", "gan"], pairs=[("input", "unet")])


def test_roc_plot(tmp_path):
    truth = np.r_[np.ones(20), np.zeros(25)]
    score = truth + np.sin(np.arange(45.0))
    r1, r2 = roc_analysis(truth, score), roc_analysis(truth, score + np.cos(3.0 * np.arange(45)))
    fig = roc_plot({"reader 1": r1, "reader 2": r2})
    _render(fig, tmp_path / "roc.png")
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


def test_sphere_table(tmp_path):
    df = _nema_table()
    fig = sphere_table(df, plot="crc", title="NEMA IEC")
    _render(fig, tmp_path / "spheres.png")
    cells = fig.axes[0].tables[0].get_celld()
    assert cells[(0, 1)].get_text().get_text() == "OSEM\nsuv_max"
    assert cells[(1, 0)].get_text().get_text() == "10"
    assert cells[(6, 6)].get_text().get_text() == f"{0.75 * (1 - np.exp(-3.7)):.2f}"
    _render(sphere_table(df[df.method == "OSEM"].drop(columns="method"), method=None), tmp_path / "one.png")
    with pytest.raises(InputError, match="missing column"):
        sphere_table(df.drop(columns="crc"))
    with pytest.raises(InputError, match="more than one row"):
        sphere_table(pd.concat([df, df.iloc[:1]]))


def test_save_png_is_atomic_and_does_not_overwrite(tmp_path):
    path = tmp_path / "fig.png"
    save_png(line_profiles({"a": [0.0, 1.0, 0.5]}), path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        save_png(line_profiles({"b": [1.0, 0.0, 0.5, 2.0]}), path)
    assert path.read_bytes() == before
    save_png(line_profiles({"b": [1.0, 0.0, 0.5, 2.0]}), path, overwrite=True)
    assert path.read_bytes() != before
    assert os.listdir(tmp_path) == ["fig.png"]  # no temporary file left behind
    with pytest.raises(InputError, match=".png"):
        save_png(line_profiles({"a": [0.0, 1.0]}), tmp_path / "fig.jpg")
    with pytest.raises(InputError, match="does not exist"):
        save_png(line_profiles({"a": [0.0, 1.0]}), tmp_path / "missing" / "fig.png")
