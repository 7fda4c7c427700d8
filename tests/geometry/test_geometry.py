import math

import numpy as np
import pytest

from spectdl.errors import GeometryError
from spectdl.geometry import Collimator, Orbit, VoxelGrid


def test_voxel_grid_normalises_sizes_and_centres():
    g = VoxelGrid((4, 6, 3), (2.0, 2.0, 3.5))
    assert g.ndim == 3 and g.extent_mm == (8.0, 12.0, 10.5)
    assert g.centres_mm(0) == [-3.0, -1.0, 1.0, 3.0]
    assert VoxelGrid((8, 8), 4.42).voxel_size_mm == (4.42, 4.42)
    assert math.isclose(VoxelGrid((2, 2, 2), 10.0).voxel_volume_ml, 1.0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(shape=(4, -1), voxel_size_mm=1.0), "shape"),
        (dict(shape=(4,), voxel_size_mm=1.0), "shape"),
        (dict(shape=(4, 4), voxel_size_mm=-2.0), "voxel_size_mm"),
        (dict(shape=(4, 4, 4), voxel_size_mm=(1.0, 2.0)), "voxel_size_mm"),
    ],
)
def test_voxel_grid_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(GeometryError, match=field):
        VoxelGrid(**kwargs)


def test_circular_orbit_ccw_cw_and_cardiac_arc():
    ccw = Orbit.circular(4, 200.0)
    assert ccw.angles_deg == (0.0, 90.0, 180.0, 270.0) and ccw.radius_mm == (200.0,) * 4
    cw = Orbit.circular(4, 200.0, start_deg=10.0, direction="cw")
    assert cw.angles_deg == (10.0, -80.0, -170.0, -260.0)
    cardiac = Orbit.circular(32, 180.0, arc_deg=180.0, start_deg=-45.0)
    assert cardiac.n_angles == 32 and math.isclose(cardiac.angles_deg[-1] - cardiac.angles_deg[0], 180 - 180 / 32)
    sub = ccw.subset([1, 3])
    assert sub.angles_deg == (90.0, 270.0)


def test_non_circular_orbit_and_errors():
    o = Orbit((0.0, 6.0, 12.0), (250.0, 240.0, 230.0))
    assert o.radius_mm == (250.0, 240.0, 230.0)
    with pytest.raises(GeometryError, match="angles_deg"):
        Orbit((), 100.0)
    with pytest.raises(GeometryError, match="radius_mm"):
        Orbit((0.0, 6.0), (100.0, -1.0))
    with pytest.raises(GeometryError, match="radius_mm"):
        Orbit((0.0, 6.0), (100.0, 100.0, 100.0))
    with pytest.raises(GeometryError, match="direction"):
        Orbit((0.0, 6.0), 100.0, direction="clockwise")
    with pytest.raises(GeometryError, match="direction"):
        Orbit((0.0, -6.0), 100.0, direction="ccw")
    with pytest.raises(GeometryError, match="n_angles"):
        Orbit.circular(0, 100.0)


def test_collimator_resolution_formula():
    c = Collimator.preset("LEHR")
    # Independent evaluation of R_sys = sqrt((d (L - 2/mu + b) / (L - 2/mu))^2 + R_int^2).
    leff = 35.0 - 2.0 / 2.63
    for b in (0.0, 100.0, 250.0):
        geo = 1.5 * (leff + b) / leff
        assert math.isclose(c.fwhm_mm(b), math.hypot(geo, 3.9), rel_tol=1e-12)
    d = np.array([50.0, 150.0])
    np.testing.assert_allclose(c.sigma_mm(d), c.fwhm_mm(d) / 2.354820045, rtol=1e-9)
    # Published LEHR system resolution at 10 cm is about 7-8 mm FWHM.
    assert 6.5 < c.fwhm_mm(100.0) < 8.5
    assert Collimator.preset("megp").name == "MEGP"
    assert Collimator.preset("MEGP").fwhm_mm(100.0) > c.fwhm_mm(100.0)


def test_collimator_matched_to_a_system_resolution():
    """A vendor's "7.6 mm at 10 cm": the hole diameter scales so that R_sys(100) = 7.6 exactly, the rest of
    the collimator (length, lead, intrinsic) is kept and the geometric part still grows ∝ (L_eff + b)."""
    c = Collimator.preset("LEHR")
    m = c.with_system_fwhm(7.6, 100.0)
    assert math.isclose(m.fwhm_mm(100.0), 7.6, rel_tol=1e-12)
    assert (m.hole_length_mm, m.intrinsic_fwhm_mm, m.mu_lead_per_cm) == (35.0, 3.9, 26.3)
    leff = 35.0 - 2.0 / 2.63
    for b in (0.0, 250.0):
        assert math.isclose(m.geometric_fwhm_mm(b) / c.geometric_fwhm_mm(b), m.hole_diameter_mm / 1.5, rel_tol=1e-12)
        assert math.isclose(m.geometric_fwhm_mm(b), math.sqrt(7.6**2 - 3.9**2) * (leff + b) / (leff + 100.0),
                            rel_tol=1e-12)
    with pytest.raises(GeometryError, match="fwhm_mm"):
        c.with_system_fwhm(3.0, 100.0)  # below the intrinsic 3.9 mm
    with pytest.raises(GeometryError, match="distance_mm"):
        c.with_system_fwhm(7.6, -1.0)


def test_collimator_errors_name_the_field():
    with pytest.raises(GeometryError, match="preset"):
        Collimator.preset("UHR")
    with pytest.raises(GeometryError, match="hole_diameter_mm"):
        Collimator(-1.0, 35.0, 0.2, 3.9, 26.0)
    with pytest.raises(GeometryError, match="hole_length_mm"):
        Collimator(1.5, 0.05, 0.2, 3.9, 26.0)
