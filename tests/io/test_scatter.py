"""Triple-energy-window scatter against the Ogawa formula and scipy's Gaussian filter."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from spectdl.errors import InputError
from spectdl.io import smooth_views, tew_scatter


def test_formula_on_known_counts():
    peak = torch.full((2, 3, 4), 100.0)
    lower = torch.full((2, 3, 4), 20.0)
    upper = torch.full((2, 3, 4), 6.0)
    # Ogawa 1991: (20/4 + 6/2) * 40 / 2 = 160 counts per pixel
    s = tew_scatter(peak, lower, upper, (40.0, 4.0, 2.0))
    assert torch.allclose(s, torch.full_like(s, 160.0))
    # a flat spectrum of c counts/keV gives c * w_peak
    c = 3.0
    s = tew_scatter(peak, torch.full_like(peak, c * 5.0), torch.full_like(peak, c * 7.0), (41.6, 5.0, 7.0))
    assert torch.allclose(s, torch.full_like(s, c * 41.6))
    clipped = tew_scatter(peak, lower, upper, (40.0, 4.0, 2.0), clip_to_peak=True)
    assert torch.allclose(clipped, peak)


def test_smoothing_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    y = torch.poisson(torch.full((3, 17, 11), 5.0, dtype=torch.float64), generator=gen)
    out = smooth_views(y, (1.3, 0.8))
    ref = np.stack([gaussian_filter(v, (1.3, 0.8), mode="nearest", truncate=4.0) for v in y.numpy()])
    assert np.allclose(out.numpy(), ref, atol=1e-12)
    s = tew_scatter(y, y, y, (2.0, 1.0, 1.0), smooth_sigma_px=1.3)
    ref2 = np.stack([gaussian_filter(v * 2.0, 1.3, mode="nearest", truncate=4.0) for v in y.numpy()])
    assert np.allclose(s.numpy(), ref2, atol=1e-12)


def test_bad_arguments():
    a = torch.ones(2, 3, 4)
    with pytest.raises(InputError, match="lower: shape"):
        tew_scatter(a, torch.ones(2, 3, 5), a, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="widths_kev"):
        tew_scatter(a, a, a, (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="widths_kev"):
        tew_scatter(a, a, a, (1.0, 1.0))
    with pytest.raises(InputError, match="upper: counts must be finite"):
        tew_scatter(a, a, -a, (1.0, 1.0, 1.0))
