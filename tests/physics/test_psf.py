import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import norm

from spectdl.errors import InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
from spectdl.physics.psf import planar_response, split_variances, step_kernels


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


SHAPE_CASES = {  # axis, pixel mm, orbit radius mm, transaxial size
    "radial 2-D, 2 mm, R 150 mm": ("radial", 2.0, 150.0, 96),
    "radial 2-D, 3 mm, R 250 mm": ("radial", 3.0, 250.0, 96),
    "axial 3-D, 3 mm, R 250 mm": ("axial", 3.0, 250.0, 48),
    "axial 3-D, 2.5 mm, R 200 mm": ("axial", 2.5, 200.0, 48),
    "axial 3-D, 4 mm, R 250 mm": ("axial", 4.0, 250.0, 48),
    # Clinical 128² grids are wider (566–614 mm) than the orbit: σ is under a pixel near the
    # collimator. The recursion of one variance step per plane was 17–19 % too peaked here.
    "radial 2-D, 4.42 mm, R 250 mm": ("radial", 4.42, 250.0, 128),
    "radial 2-D, 4.8 mm, R 200 mm": ("radial", 4.8, 200.0, 128),
    "axial 3-D, 4.42 mm, R 250 mm": ("axial", 4.42, 250.0, 128),
}


@pytest.mark.parametrize("case", list(SHAPE_CASES))
def test_point_response_is_the_pixel_integrated_gaussian_of_the_collimator_at_every_depth(case):
    """A point at a voxel centre, view 0 (the rotation is then an exact permutation), no attenuation:
    its projection must be the detector-pixel integral of the Gaussian of ``Collimator.fwhm_mm(b)``
    (scipy's normal CDF), within 2 % relative L2 (the issue asks 5 %), at every
    depth in front of the collimator (near, centre and far planes)."""
    axis, px, radius, n = SHAPE_CASES[case]
    lehr = Collimator.preset("LEHR")
    nz = None if axis == "radial" else 41
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
        if b_mm < 0:  # behind the collimator face
            continue
        ref = _pixel_gaussian(centre if nz is None else nz // 2, profile.size, lehr.sigma_mm(b_mm) / px)
        assert profile.sum() == pytest.approx(1.0, abs=1e-6)
        errors.append(np.linalg.norm(profile - ref) / np.linalg.norm(ref))
    # The bound is 5 %; the module docstring claims about 1.5 %, so hold it to 2 %.
    assert max(errors) < 0.02, [round(e, 4) for e in errors]
    # Nearest planes take no steps: their residual kernel is the target itself.
    assert errors[-1] < 0.01


def test_steps_add_exactly_a_third_of_a_pixel_squared_without_kurtosis():
    """``S^k`` for ``S = [1/6, 2/3, 1/6]``: variance ``k/3`` and fourth cumulant ``m4 − 3·m2² = 0``
    (the binomial-like sum of ``k`` independent steps, each of zero excess kurtosis)."""
    kernels = step_kernels(np.arange(6))
    n = np.arange(kernels.shape[-1]) - kernels.shape[-1] // 2
    for k, kern in enumerate(kernels):
        assert kern.sum() == pytest.approx(1.0, abs=1e-15)
        m2, m4 = (kern * n**2).sum(), (kern * n**4).sum()
        assert m2 == pytest.approx(k / 3, abs=1e-14)
        assert m4 - 3 * m2**2 == pytest.approx(0.0, abs=1e-13)


def test_variances_split_into_steps_and_a_residual():
    v = np.array([0.0, 0.3, 0.8333, 0.84, 1.2, 5.0, 31.7])
    m, r = split_variances(v)
    np.testing.assert_allclose(m / 3 + r, v, rtol=0, atol=1e-12)
    assert list(m[:3]) == [0, 0, 0] and np.array_equal(r[:3], v[:3])  # below 5/6: no step
    assert np.all((r[3:] >= 0.5 - 1e-12) & (r[3:] < 5 / 6))


def _random_blur(groups, depth, axial, dtype, seed=0):
    """A DepthBlur whose every group has its own far-to-near variances (up to ~3 px²: steps,
    identity steps where the variance does not change, and residuals)."""
    from spectdl.physics.psf import DepthBlur

    rng = np.random.default_rng(seed)
    # falling by less than a step (1/3 px²) per plane, so each increment is one three-tap step
    drops = rng.uniform(0.0, 0.33, (groups, depth - 1))
    drops[:, depth // 2 :] = 0.0  # equal variances: steps that do not move
    var = rng.uniform(0.05, 0.5, (groups, 1)) + np.concatenate([np.cumsum(drops[:, ::-1], 1)[:, ::-1],
                                                               np.zeros((groups, 1))], 1)
    var_z = var * rng.uniform(0.5, 1.5, (groups, 1)) if axial else None
    return DepthBlur.from_variances(var, var_z, dtype=dtype)


@pytest.mark.parametrize("axial,shape", [(False, (9, 4, 13, 1)), (True, (9, 5, 11, 7))])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
def test_compiled_depth_blur_equals_the_torch_recursion_and_is_its_own_adjoint(axial, shape, dtype, tol):
    """The compiled recursion (numba, :mod:`spectdl.physics._compiled`) against the torch loop it
    replaces on the CPU, with a kernel per group, and <B p, y> = <p, Bᵀ y>."""
    depth, groups = shape[:2]
    blur = _random_blur(groups, depth, axial, dtype)
    assert blur.is_three_tap and not all(blur.moves) and any(blur.moves)
    g = torch.Generator().manual_seed(1)
    planes = torch.rand(shape, generator=g, dtype=dtype)
    image = torch.rand(shape[1:], generator=g, dtype=dtype)
    with torch.no_grad():
        blur.compiled = True
        fwd, adj = blur.forward(planes), blur.adjoint(image)
        blur.compiled = False
        fwd_t, adj_t = blur.forward(planes), blur.adjoint(image)
    assert float((fwd - fwd_t).norm() / fwd_t.norm()) < tol
    assert float((adj - adj_t).norm() / adj_t.norm()) < tol
    lhs, rhs = float((fwd.double() * image.double()).sum()), float((planes.double() * adj.double()).sum())
    assert abs(lhs - rhs) / abs(lhs) < 10 * tol


def test_compiled_depth_blur_follows_torch_threads():
    """The compiled loop runs on torch's thread count, and gives the same bytes on one thread."""
    import numba

    blur = _random_blur(6, 8, True, torch.float64)
    planes = torch.rand((8, 6, 9, 5), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    saved = torch.get_num_threads()
    try:
        with torch.no_grad():
            many = blur.forward(planes)
            torch.set_num_threads(1)
            one = blur.forward(planes)
            assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one, many)
