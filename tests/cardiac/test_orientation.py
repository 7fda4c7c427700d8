import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.cardiac import LVGeometry, axis_error_deg, estimate_lv_axis, lv_frame, lv_geometry_from_phantom, reorient
from spectdl.errors import InputError

from ._images import GRID, blurred, phantoms


@pytest.fixture(scope="module")
def healthy():
    return phantoms(4, seed=11)


def test_axis_error_matches_the_arccos_of_the_dot_product():
    assert axis_error_deg((1, 0, 0), (1, 1, 0)) == pytest.approx(45.0, abs=1e-9)
    assert axis_error_deg((0, 0, 2), (0, 0, -1)) == pytest.approx(180.0, abs=1e-9)
    a, b = np.array([0.3, -0.5, 0.8]), np.array([-0.1, 0.9, 0.2])
    expect = math.degrees(math.acos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert axis_error_deg(a, b) == pytest.approx(expect, abs=1e-9)
    with pytest.raises(InputError, match="non-zero"):
        axis_error_deg((0, 0, 0), (1, 0, 0))


def test_frame_is_orthonormal_and_anterior_lies_towards_plus_y():
    d, a, l = lv_frame((1.0, 1.0, -1.0))
    basis = np.stack([d, a, l])
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(d, np.array([1, 1, -1]) / math.sqrt(3), atol=1e-12)
    assert a[1] > 0 and l[0] > 0 and abs(a @ d) < 1e-12
    with pytest.raises(InputError, match="parallel to y"):
        lv_frame((0, 2, 0))


def test_estimated_axis_recovers_the_phantoms_true_axis(healthy):
    for b in range(healthy.batch_size):
        truth = lv_geometry_from_phantom(healthy, b)
        lv = estimate_lv_axis(blurred(healthy, b), GRID)
        assert axis_error_deg(lv.axis, truth.axis) < 3.0
        assert np.linalg.norm(np.subtract(lv.centre_mm, truth.centre_mm)) < 3.0
        # The base within a voxel; blur fills the cavity's tip, so its end comes out short (documented).
        assert abs(lv.base_mm - truth.base_mm) < GRID.voxel_size_mm[0]
        assert truth.cavity_end_mm - 10.0 < lv.cavity_end_mm <= truth.cavity_end_mm + 1.0
        assert abs(lv.apex_mm - truth.apex_mm) < 4.0


def test_axis_of_a_tilted_ellipsoidal_shell_built_here():
    # A shell about an axis given here, nothing from the phantom module.
    shape, s = (48, 48, 48), 4.0
    axes = [(np.arange(n) - (n - 1) / 2) * s for n in shape]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    d = np.array([0.6, 0.5, -0.62])
    d /= np.linalg.norm(d)
    c = np.array([6.0, -4.0, 8.0])
    p = np.stack([X, Y, Z], -1) - c
    u = p @ d
    rho2 = (p * p).sum(-1) - u * u
    outer = (u / 50) ** 2 + rho2 / 30**2 <= 1
    inner = (u / 40) ** 2 + rho2 / 20**2 <= 1
    img = ndimage.gaussian_filter(((outer & ~inner) & (u > -20)).astype(float), 1.0)
    lv = estimate_lv_axis(img, s)
    assert axis_error_deg(lv.axis, d) < 2.0
    assert np.linalg.norm(np.subtract(lv.centre_mm, c)) < 2.5


def test_reorient_puts_a_point_at_its_lv_coordinates():
    lv = LVGeometry.from_axis((4.0, -6.0, 2.0), (1.0, 0.8, -0.7), -30.0, 40.0, 50.0)
    shape, s = (40, 40, 40), 3.0
    axes = [(np.arange(n) - (n - 1) / 2) * s for n in shape]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    u0, a0, l0 = 12.0, 15.0, -9.0  # 15 mm anterior, 9 mm septal of the axis
    p0 = lv.point(u0, a0, l0)
    img = np.exp(-((X - p0[0]) ** 2 + (Y - p0[1]) ** 2 + (Z - p0[2]) ** 2) / (2 * 3.0**2))
    out = reorient(torch.as_tensor(img, dtype=torch.float32), s, lv, size=(31, 25))
    assert out["sa"].shape == (31, 25, 25) and out["sa"].dtype == torch.float32
    k, i, j = np.unravel_index(int(out["sa"].argmax()), out["sa"].shape)
    h = out["spacing_mm"]
    assert abs(float(out["u_mm"][k]) - u0) <= h and abs(float(out["ant_mm"][i]) - a0) <= h
    assert abs(float(out["lat_mm"][j]) - l0) <= h
    # VLA slice index runs septal -> lateral, HLA inferior -> anterior; the same point in each.
    m, i2, k2 = np.unravel_index(int(out["vla"].argmax()), out["vla"].shape)
    assert (m, i2, k2) == (j, i, k)
    n, r, c = np.unravel_index(int(out["hla"].argmax()), out["hla"].shape)
    assert abs(float(out["lat_mm"][n]) - a0) <= h and r == 30 - k and c == j


def test_bad_images_are_refused_with_the_field_named():
    with pytest.raises(InputError, match="3-D volume"):
        estimate_lv_axis(np.ones((4, 4)), 6.4)
    with pytest.raises(InputError, match="non-negative"):
        estimate_lv_axis(-np.ones((8, 8, 8)), 6.4)
    spot = np.zeros((16, 16, 16))
    spot[8, 8, 8] = 1.0  # one hot voxel: 0.26 ml, far below any LV
    with pytest.raises(InputError, match="no LV myocardium"):
        estimate_lv_axis(spot, 6.4)
    with pytest.raises(InputError, match="voxel_size_mm"):
        estimate_lv_axis(np.ones((8, 8, 8)), -1.0)
