"""image_grid, profile_through and line_profiles."""

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.report import image_grid, line_profiles, profile_through


def _phantom():
    x, y = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 20), indexing="ij")
    return np.exp(-(x**2 + y**2) * 3)


def test_image_grid_shared_window_and_symmetric_difference(tmp_path, render):
    ref = _phantom()
    noisy = ref + 0.1 * np.sin(7 * np.arange(24))[:, None]
    images = [noisy, torch.tensor(ref * 1.1)[None, None], ref]
    fig = image_grid(images, ["input", "enhanced", "reference"], difference=(1, 2))
    render(fig, tmp_path / "grid.png")
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


def test_line_profiles(tmp_path, render):
    ref = _phantom()
    prof = profile_through(ref, y=10)
    np.testing.assert_allclose(prof, ref[:, 10])
    curves = {"reference": prof, "enhanced": torch.tensor(prof * 0.9)}
    fig = line_profiles(curves, positions_mm=np.arange(24) * 4.4)
    render(fig, tmp_path / "profile.png")
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(24) * 4.4)
    with pytest.raises(InputError, match="positions_mm"):
        line_profiles({"a": prof}, positions_mm=np.arange(5))
