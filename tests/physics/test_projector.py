"""The projector against analytic results: adjointness, geometry, resolution, counts, attenuation."""

import math

import numpy as np
import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector

LEHR = Collimator.preset("LEHR")
F64 = torch.float64


def _disc(n, radius_vox, value=1.0, centre=(0.0, 0.0), supersample=4):
    """Disc on an n×n grid with partial-volume weights (supersampled), indices [x, y]."""
    t = (torch.arange(n * supersample, dtype=F64) + 0.5) / supersample - 0.5 - (n - 1) / 2
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    inside = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius_vox**2).to(F64)
    return value * inside.reshape(n, supersample, n, supersample).mean((1, 3))


CONFIGS = {
    "2d-ideal": (VoxelGrid((24, 24), 4.0), Orbit.circular(16, 120.0), None, False, 1),
    "2d-psf-mu-b4": (VoxelGrid((24, 24), 4.0), Orbit.circular(16, 120.0), LEHR, True, 4),
    "2d-cw-180": (VoxelGrid((24, 24), 4.0), Orbit.circular(15, 120.0, 180.0, 45.0, "cw"), LEHR, True, 1),
    "3d-psf-mu": (VoxelGrid((20, 20, 6), (4.0, 4.0, 5.0)), Orbit.circular(12, 110.0), LEHR, True, 1),
    "3d-psf-mu-b4-cw": (VoxelGrid((20, 20, 5), 4.0), Orbit.circular(12, 110.0, direction="cw"), LEHR, True, 4),
    "3d-noncircular-180": (
        VoxelGrid((20, 20, 4), 4.0),
        Orbit(tuple(-45.0 + 12.0 * k for k in range(15)), tuple(100.0 + 3.0 * k for k in range(15))),
        Collimator.preset("MEGP"),
        True,
        1,
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_adjointness(name):
    grid, orbit, coll, with_mu, batch = CONFIGS[name]
    mu = None
    if with_mu:
        gen = torch.Generator().manual_seed(1)
        mu = 0.3 * torch.rand((batch, 1) + grid.shape, generator=gen, dtype=F64)
    P = SpectProjector(grid, orbit, coll, mu)
    res = P.adjointness_test(batch=batch, generator=torch.Generator().manual_seed(2))
    assert res.relative_error < 1e-5
    assert res.ax_y > 0


def test_autograd_gradient_is_the_adjoint():
    grid, orbit, coll, _, _ = CONFIGS["3d-psf-mu"]
    mu = torch.full((1, 1) + grid.shape, 0.15, dtype=F64)
    P = SpectProjector(grid, orbit, coll, mu)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand((1, 1) + grid.shape, generator=gen, dtype=F64, requires_grad=True)
    w = torch.rand(P.projection_shape(), generator=gen, dtype=F64)
    (P(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, P.A_adjoint(w), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direction", ["ccw", "cw"])
@pytest.mark.parametrize("coll", [None, LEHR])
def test_point_source_centroid_follows_the_sinusoid(direction, coll):
    n, dx = 48, 3.0
    grid = VoxelGrid((n, n), dx)
    orbit = Orbit.circular(24, 150.0, start_deg=10.0, direction=direction)
    x0_mm, y0_mm = 21.0, -12.0
    x = torch.zeros(1, 1, n, n, dtype=F64)
    x[0, 0, round(x0_mm / dx + (n - 1) / 2), round(y0_mm / dx + (n - 1) / 2)] = 1.0
    y = SpectProjector(grid, orbit, coll)(x)[0, 0]  # [views, radial]
    r_mm = (torch.arange(n, dtype=F64) - (n - 1) / 2) * dx
    centroid = (y * r_mm).sum(1) / y.sum(1)
    theta = torch.deg2rad(torch.tensor(orbit.angles_deg, dtype=F64))
    xs = (round(x0_mm / dx + (n - 1) / 2) - (n - 1) / 2) * dx
    ys = (round(y0_mm / dx + (n - 1) / 2) - (n - 1) / 2) * dx
    expected = xs * torch.cos(theta) + ys * torch.sin(theta)
    torch.testing.assert_close(centroid, expected, atol=1e-9, rtol=0)


def test_3d_point_source_lands_on_its_axial_slice_and_side():
    grid = VoxelGrid((16, 16, 8), 4.0)
    x = torch.zeros((1, 1) + grid.shape, dtype=F64)
    x[0, 0, 12, 8, 5] = 1.0  # +x side, slice 5
    y = SpectProjector(grid, Orbit.circular(4, 100.0))(x)[0, 0]
    assert y[:, :, 5].sum() == pytest.approx(4.0) and y.sum() == pytest.approx(4.0)
    # At 0 deg the radial axis is +x: the source sits right of centre; at 180 deg it is mirrored.
    assert int(y[0, :, 5].argmax()) == 12 and int(y[2, :, 5].argmax()) == 16 - 1 - 12


@pytest.mark.parametrize("distance_mm", [50.0, 100.0, 170.0, 250.0])
def test_psf_fwhm_matches_collimator_model(distance_mm):
    n, dx, radius = 256, 1.0, 170.0
    grid = VoxelGrid((n, n), dx)
    y_mm = radius - distance_mm  # depth of the point towards the detector at 0 deg
    iy = round(y_mm / dx + (n - 1) / 2)
    b = radius - (iy - (n - 1) / 2) * dx
    x = torch.zeros(1, 1, n, n, dtype=F64)
    x[0, 0, n // 2, iy] = 1.0
    prof = SpectProjector(grid, Orbit.circular(1, radius), LEHR)(x)[0, 0, 0]
    r = torch.arange(n, dtype=F64) * dx
    mean = (prof * r).sum() / prof.sum()
    sigma = math.sqrt(float((prof * (r - mean) ** 2).sum() / prof.sum()))
    fwhm_moment = 2 * math.sqrt(2 * math.log(2)) * sigma
    # Half-maximum crossing, linearly interpolated: checks the shape is Gaussian, not just its variance.
    p = prof.numpy()
    half = p.max() / 2
    above = np.where(p >= half)[0]
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - p[lo - 1]) / (p[lo] - p[lo - 1])
    right = hi + (p[hi] - half) / (p[hi] - p[hi + 1])
    fwhm_halfmax = (right - left) * dx
    expected = LEHR.fwhm_mm(b)
    assert fwhm_moment == pytest.approx(expected, rel=0.05)
    assert fwhm_halfmax == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("coll", [None, LEHR])
def test_counts_per_view_conserved_without_attenuation(coll):
    n, nz = 40, 16
    grid = VoxelGrid((n, n, nz), 4.0)
    gen = torch.Generator().manual_seed(5)
    inside = _disc(n, n / 2 - 8)[..., None].expand(n, n, nz)
    x = torch.rand((2, 1) + grid.shape, generator=gen, dtype=F64) * inside
    # Keep 3 sigma of the widest response inside the detector, so that nothing leaves its edges.
    x[..., :6] = 0
    x[..., -6:] = 0
    y = SpectProjector(grid, Orbit.circular(30, 200.0, start_deg=7.0), coll)(x)
    per_view = y.sum((3, 4))
    total = x.sum((2, 3, 4))
    # Exact for the rotation; the Gaussian tails past 3 sigma that leave the detector cost < 1e-5.
    rtol = 1e-10 if coll is None else 1e-5
    torch.testing.assert_close(per_view, total[..., None].expand_as(per_view), rtol=rtol, atol=0)


def test_uniform_attenuating_disc_matches_analytic_profile():
    # Uniform activity a and attenuation mu in a disc of radius R: each ray of chord L = 2 sqrt(R² - s²)
    # collects a (1 - exp(-mu L)) / mu, i.e. the chord integral of a·exp(-mu·t).
    n, dx, r_mm, mu = 128, 1.0, 50.0, 0.15
    grid = VoxelGrid((n, n), dx)
    disc = _disc(n, r_mm / dx)[None, None]
    P = SpectProjector(grid, Orbit.circular(4, 150.0, start_deg=30.0), None, mu * disc)
    y = P(disc)[0, 0]
    s = (torch.arange(n, dtype=F64) - (n - 1) / 2) * dx
    chord_cm = 2 * torch.sqrt(torch.clamp(r_mm**2 - s**2, min=0)) / 10
    expected = (1 - torch.exp(-mu * chord_cm)) / mu * 10 / dx  # voxel units
    central = s.abs() < 0.8 * r_mm
    for v in range(4):
        torch.testing.assert_close(y[v][central], expected[central], rtol=0.02, atol=0)
    # And the transmission factor itself: a point at the centre is attenuated by exp(-mu R).
    pt = torch.zeros(1, 1, n, n, dtype=F64)
    pt[0, 0, n // 2, n // 2] = 1.0
    ratio = P(pt).sum((2, 3)) / 4
    assert float(ratio) == pytest.approx(math.exp(-mu * (r_mm + 0.5 * dx) / 10), rel=0.02)


def test_per_sample_mu_maps():
    grid = VoxelGrid((24, 24), 4.0)
    x = _disc(24, 8)[None, None].expand(2, 1, 24, 24).contiguous()
    mu = torch.stack([torch.zeros(1, 24, 24, dtype=F64), 0.15 * _disc(24, 10)[None]])
    y = SpectProjector(grid, Orbit.circular(8, 100.0), None, mu)(x)
    y0 = SpectProjector(grid, Orbit.circular(8, 100.0))(x[:1])
    torch.testing.assert_close(y[:1], y0)
    assert float(y[1].sum()) < 0.8 * float(y[0].sum())


def test_subsets_match_full_projection():
    grid, orbit, coll, _, _ = CONFIGS["3d-psf-mu"]
    mu = torch.full((1, 1) + grid.shape, 0.1, dtype=F64)
    P = SpectProjector(grid, orbit, coll, mu)
    x = torch.rand((1, 1) + grid.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    full = P(x)
    idx = [1, 5, 9]
    torch.testing.assert_close(P.A(x, subset=idx), full[:, :, idx])
    yb = torch.zeros_like(full)
    yb[:, :, idx] = full[:, :, idx]
    torch.testing.assert_close(P.A_adjoint(full[:, :, idx], subset=idx), P.A_adjoint(yb))


def test_3d_without_psf_equals_2d_per_slice():
    g3 = VoxelGrid((20, 20, 3), 4.0)
    g2 = VoxelGrid((20, 20), 4.0)
    orbit = Orbit.circular(9, 100.0)
    x = torch.rand((1, 1) + g3.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    mu = 0.2 * torch.rand((1, 1) + g3.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    y3 = SpectProjector(g3, orbit, None, mu)(x)
    for k in range(3):
        y2 = SpectProjector(g2, orbit, None, mu[..., k])(x[..., k])
        torch.testing.assert_close(y3[..., k], y2)


def test_float32_and_float64_agree():
    grid, orbit, coll, _, _ = CONFIGS["3d-psf-mu"]
    mu = torch.full((1, 1) + grid.shape, 0.15)
    x = torch.rand((1, 1) + grid.shape, generator=torch.Generator().manual_seed(0))
    y32 = SpectProjector(grid, orbit, coll, mu)(x)
    y64 = SpectProjector(grid, orbit, coll, mu.double())(x.double())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-6)


def test_bad_input_messages_name_the_argument():
    grid = VoxelGrid((16, 16, 4), 4.0)
    orbit = Orbit.circular(6, 100.0)
    P = SpectProjector(grid, orbit, LEHR)
    with pytest.raises(InputError, match=r"x: shape \(1, 1, 16, 16\).*expected \[B, C, 16, 16, 4\]"):
        P(torch.zeros(1, 1, 16, 16))
    with pytest.raises(InputError, match="x: activity contains NaN"):
        P(torch.full((1, 1, 16, 16, 4), float("nan")))
    with pytest.raises(InputError, match="x: activity has negative"):
        P(-torch.ones(1, 1, 16, 16, 4))
    with pytest.raises(InputError, match=r"y: shape .*expected \[B, C, 6, 16, 4\]"):
        P.A_adjoint(torch.zeros(1, 1, 5, 16, 4))
    with pytest.raises(InputError, match="mu_map: shape"):
        SpectProjector(grid, orbit, mu_map=torch.zeros(1, 1, 16, 16, 5))
    with pytest.raises(InputError, match="mu_map: minimum"):
        SpectProjector(grid, orbit, mu_map=-torch.ones(1, 1, 16, 16, 4))
    with pytest.raises(InputError, match="mu_map: maximum .* HU"):
        SpectProjector(grid, orbit, mu_map=torch.full((1, 1, 16, 16, 4), 1000.0))
    with pytest.raises(InputError, match="mu_map: batch 2 does not match the input batch 3"):
        SpectProjector(grid, orbit, mu_map=torch.zeros(2, 1, 16, 16, 4))(torch.zeros(3, 1, 16, 16, 4))
    with pytest.raises(InputError, match="subset"):
        P.A(torch.zeros(1, 1, 16, 16, 4), subset=[7])
    with pytest.raises(GeometryError, match="grid: the transaxial plane must be square"):
        SpectProjector(VoxelGrid((16, 12, 4), 4.0), orbit)
    with pytest.raises(GeometryError, match="angles_deg"):
        SpectProjector(grid, Orbit((), 100.0))


# ---------------------------------------------------------------- dtype, batch and subset checks
def _small_projector():
    return SpectProjector(VoxelGrid((16, 16), 4.0), Orbit.circular(8, 100.0), LEHR)


def test_integer_input_is_cast_to_float32_and_matches_the_float_result():
    P = _small_projector()
    gen = torch.Generator().manual_seed(0)
    x_int = torch.randint(0, 50, (2, 1, 16, 16), generator=gen)
    y = P.A(x_int)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, P.A(x_int.float()), rtol=0, atol=0)
    y_int = torch.randint(0, 50, P.projection_shape(2, 1), generator=gen, dtype=torch.int32)
    back = P.A_adjoint(y_int)
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, P.A_adjoint(y_int.float()), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.bool, torch.complex64])
def test_unsupported_dtypes_raise_naming_the_dtype(dtype):
    P = _small_projector()
    with pytest.raises(InputError, match=rf"x: dtype {dtype}.*float32 or float64"):
        P.A(torch.ones((1, 1, 16, 16)).to(dtype))
    with pytest.raises(InputError, match=rf"y: dtype {dtype}.*float32 or float64"):
        P.A_adjoint(torch.ones(P.projection_shape(1, 1)).to(dtype))


def test_empty_batch_raises_input_error():
    P = _small_projector()
    with pytest.raises(InputError, match=r"x: shape \(0, 1, 16, 16\) has an empty batch"):
        P.A(torch.ones((0, 1, 16, 16)))
    with pytest.raises(InputError, match=r"y: shape \(0, 1, 8, 16\) has an empty batch"):
        P.A_adjoint(torch.ones((0, 1, 8, 16)))


@pytest.mark.parametrize("subset", [[1.5], [0, 2.0], torch.tensor([1.0]), [True]])
def test_non_integer_subsets_raise(subset):
    P = _small_projector()
    with pytest.raises(InputError, match="subset: "):
        P.A(torch.ones((1, 1, 16, 16)), subset)


def test_integer_subsets_of_numpy_and_tensor_types_are_accepted():
    P = _small_projector()
    x = torch.rand((1, 1, 16, 16), generator=torch.Generator().manual_seed(1))
    ref = P.A(x, [1, 3])
    torch.testing.assert_close(P.A(x, np.array([1, 3])), ref, rtol=0, atol=0)
    torch.testing.assert_close(P.A(x, torch.tensor([1, 3])), ref, rtol=0, atol=0)


# ---------------------------------------------------------------- the attenuation memory budget
def _budget_case(**kw):
    grid = VoxelGrid((20, 20, 6), 4.0)
    orbit = Orbit.circular(12, 110.0)
    gen = torch.Generator().manual_seed(11)
    mu = 0.3 * torch.rand((2, 1) + grid.shape, generator=gen, dtype=F64)
    x = torch.rand((2, 1) + grid.shape, generator=gen, dtype=F64)
    return SpectProjector(grid, orbit, LEHR, mu, **kw), x


def _cache_bytes(P):
    return sum(t.numel() * t.element_size() for t in P._att_cache.values())


def test_attenuation_storage_follows_the_budget():
    P, _ = _budget_case()
    full = 12 * 2 * 20 * 20 * 6 * 8  # views · B_mu · voxels · float64
    assert P.attenuation_cache_bytes(F64) == full
    assert P.attenuation_storage(F64) == "full"
    P.attenuation_cache_mb = full / 2**20 * 0.9  # float64 no longer fits, float16 (a quarter) does
    assert P.attenuation_storage(F64) == "half"
    P.attenuation_cache_mb = full / 2**20 * 0.2  # not even float16
    assert P.attenuation_storage(F64) == "recompute"
    P.attenuation_cache_mb = full / 2**20 * 0.9
    P.over_budget = "recompute"
    assert P.attenuation_storage(F64) == "recompute"
    P.cache_attenuation = False
    assert P.attenuation_storage() == "recompute"
    P.set_mu_map(None)
    assert P.attenuation_storage() == "none"


@pytest.mark.parametrize("mode", ["half", "recompute"])
def test_over_budget_modes_keep_the_operator(mode):
    ref, x = _budget_case()
    y_ref, b_ref = ref.A(x), ref.A_adjoint(ref.A(x))
    budget = ref.attenuation_cache_bytes(F64) / 2**20 * 0.5
    P, _ = _budget_case(attenuation_cache_mb=budget, over_budget=mode)
    assert P.attenuation_storage(F64) == mode
    y = P.A(x)
    b = P.A_adjoint(y_ref)
    assert _cache_bytes(P) <= budget * 2**20
    err_y = float((y - y_ref).norm() / y_ref.norm())
    err_b = float((b - b_ref).norm() / b_ref.norm())
    if mode == "recompute":
        assert _cache_bytes(P) == 0
        assert err_y < 1e-12 and err_b < 1e-12
    else:
        # float16 keeps 11 significant bits: factors within 2⁻¹¹ relative, so the projection too.
        assert all(t.dtype == torch.float16 for t in P._att_cache.values())
        assert 1e-6 < err_y < 2.0**-11 and 1e-6 < err_b < 2.0**-11
    res = P.adjointness_test(batch=2, generator=torch.Generator().manual_seed(5))
    assert res.relative_error < 1e-12  # the same rounded factors both ways: still a matched pair


def test_cache_keeps_one_dtype_at_a_time():
    P, x = _budget_case()
    P.A(x)
    assert _cache_bytes(P) == P.attenuation_cache_bytes(F64)
    P.A(x.float())
    assert _cache_bytes(P) == P.attenuation_cache_bytes(torch.float32)


@pytest.mark.parametrize("kw, field", [({"attenuation_cache_mb": -1}, "attenuation_cache_mb"),
                                       ({"over_budget": "drop"}, "over_budget")])
def test_bad_budget_arguments_name_the_field(kw, field):
    with pytest.raises(InputError, match=field):
        _budget_case(**kw)
