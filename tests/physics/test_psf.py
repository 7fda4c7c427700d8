import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import norm

from spectdl.errors import InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
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
            # A pixel-integrated Gaussian: the Gaussian's variance plus the pixel's box, 1/12 pixel²
            # (cutting its tails at ±4σ removes ~1e-4 of it).
            assert var == pytest.approx(sigma**2 / px**2 + 1 / 12, rel=1e-3)
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


def _pixel_gaussian(centre: int, size: int, sigma_px: float) -> np.ndarray:
    edges = np.arange(size + 1, dtype=np.float64) - 0.5 - centre
    return np.diff(norm.cdf(edges / sigma_px))


@pytest.mark.parametrize("case", ["radial 2-D, 2 mm, R 150 mm", "radial 2-D, 3 mm, R 250 mm",
                                  "axial 3-D, 3 mm, R 250 mm", "axial 3-D, 2.5 mm, R 200 mm",
                                  "axial 3-D, 4 mm, R 250 mm"])
def test_point_response_is_the_pixel_integrated_gaussian_of_the_collimator_at_every_depth(case):
    """A point at a voxel centre, view 0 (the rotation is then an exact permutation), no attenuation:
    its projection must be the detector-pixel integral of the Gaussian of ``Collimator.fwhm_mm(b)``
    (scipy's normal CDF), within 5 % relative L2, at every depth (near, centre and far planes)."""
    axis, px, radius = {"radial 2-D, 2 mm, R 150 mm": ("radial", 2.0, 150.0),
                        "radial 2-D, 3 mm, R 250 mm": ("radial", 3.0, 250.0),
                        "axial 3-D, 3 mm, R 250 mm": ("axial", 3.0, 250.0),
                        "axial 3-D, 2.5 mm, R 200 mm": ("axial", 2.5, 200.0),
                        "axial 3-D, 4 mm, R 250 mm": ("axial", 4.0, 250.0)}[case]
    lehr = Collimator.preset("LEHR")
    n, nz = (96, None) if axis == "radial" else (48, 41)
    grid = VoxelGrid((n, n) if nz is None else (n, n, nz), px)
    proj = SpectProjector(grid, Orbit.circular(4, radius), lehr)
    centre = n // 2
    errors = []
    for iy in range(2, n - 2, 6):  # depth plane iy; +y faces the detector at view 0
        x = torch.zeros((1, 1) + grid.shape, dtype=torch.float64)
        if nz is None:
            x[0, 0, centre, iy] = 1.0
        else:
            x[0, 0, centre, iy, nz // 2] = 1.0
        y = proj.A(x, subset=[0])[0, 0, 0]
        profile = (y if nz is None else y.sum(0)).numpy()  # axial: the marginal over radial bins
        b_mm = radius - (iy - (n - 1) / 2) * px
        ref = _pixel_gaussian(centre if nz is None else nz // 2, profile.size, lehr.sigma_mm(b_mm) / px)
        assert profile.sum() == pytest.approx(1.0, abs=1e-6)
        errors.append(np.linalg.norm(profile - ref) / np.linalg.norm(ref))
    assert max(errors) < 0.05, [round(e, 4) for e in errors]
    # Nearest planes see the exact base kernel and few increments: their error is the smallest.
    assert errors[-1] < 0.01
