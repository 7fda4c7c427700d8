import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.errors import InputError
from spectdl.geometry import Collimator
from spectdl.physics.psf import planar_response


def _moments(img: np.ndarray, axis: int) -> tuple[float, float]:
    w = img.sum(1 - axis)
    x = np.arange(w.size, dtype=np.float64)
    m = (w * x).sum() / w.sum()
    return m, (w * (x - m) ** 2).sum() / w.sum()


def test_a_point_spreads_with_the_collimator_variance_of_each_view_and_keeps_its_counts():
    lehr = Collimator.preset("LEHR")
    views = torch.zeros(1, 2, 81, 61, dtype=torch.float64)
    views[0, :, 40, 30] = 1000.0
    out = planar_response(views, lehr, [130.0, 40.0], (2.26, 3.0))
    for v, d in enumerate((130.0, 40.0)):
        img = out[0, v].numpy()
        sigma = lehr.fwhm_mm(d) / (2 * math.sqrt(2 * math.log(2)))  # the analytic system response
        assert img.sum() == pytest.approx(1000.0, rel=1e-9)
        for axis, px in ((0, 2.26), (1, 3.0)):
            centre, var = _moments(img, axis)
            assert centre == pytest.approx((40, 30)[axis], abs=1e-9)
            # The discrete Gaussian has the variance exactly; cutting its tails at ±4σ removes ~1e-4 of it.
            assert var == pytest.approx(sigma**2 / px**2, rel=1e-3)
    # The far view is wider: the anterior (130 mm) spreads more than the posterior (40 mm).
    assert out[0, 0].max() < out[0, 1].max()


def test_matches_scipy_gaussian_filter_for_a_wide_blur():
    lehr = Collimator.preset("LEHR")
    gen = torch.Generator().manual_seed(3)
    views = torch.rand(2, 1, 64, 48, generator=gen, dtype=torch.float64)
    out = planar_response(views, lehr, [200.0], 2.0)
    sigma_px = lehr.sigma_mm(200.0) / 2.0
    ref = ndimage.gaussian_filter(views[1, 0].numpy(), sigma_px, mode="constant", truncate=6.0)
    inner = (slice(20, -20), slice(20, -20))
    # A sampled Gaussian and the discrete one differ by O(1/σ²) at this width (σ = 5.3 px): about 0.5 %.
    assert np.abs(out[1, 0].numpy()[inner] - ref[inner]).max() < 1e-2 * ref[inner].mean()


def test_bad_distances_are_named():
    lehr = Collimator.preset("LEHR")
    with pytest.raises(InputError, match="distances_mm: .*expected 2 distances"):
        planar_response(torch.zeros(1, 2, 8, 8), lehr, [100.0], 2.0)
    with pytest.raises(InputError, match="distances_mm"):
        planar_response(torch.zeros(1, 2, 8, 8), lehr, [100.0, -1.0], 2.0)
