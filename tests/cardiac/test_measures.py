import math

import numpy as np
import pytest

from spectdl.cardiac import estimate_lv_axis, lv_geometry_from_phantom, lv_measures
from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.phantoms.cardiac import cardiac

from ._images import GRID, blurred


@pytest.fixture(scope="module")
def fine():
    return cardiac(VoxelGrid((122, 86, 68), 3.0), 1, seed=7)


def test_volumes_and_wall_thickness_follow_the_analytic_shapes(fine):
    lv = lv_geometry_from_phantom(fine, 0)
    got = lv_measures(lv, fine.grid)
    L, r, w = (float(fine.info[k][0]) for k in ("lv_long_mm", "lv_short_mm", "lv_wall_mm"))
    # Cavity: the ellipsoid (u/L)² + (ρ/r)² ≤ 1 cut at u = −L/2: π r² ∫ (1 − u²/L²) du = 27/24 π r² L.
    assert got["cavity_volume_ml"] == pytest.approx(27 / 24 * math.pi * r * r * L / 1000, rel=0.06)

    def cut(a, b):  # volume of the ellipsoid of semi-axes (a, b, b) beyond u = −L/2
        return math.pi * b * b * ((a + L / 2) - (a**3 + L**3 / 8) / (3 * a * a))

    assert got["myocardial_volume_ml"] == pytest.approx((cut(L + w, r + w) - cut(L, r)) / 1000, rel=0.06)
    # Mid third: u from 0 to L/2; radial thickness (r + w)√(1 − u²/(L + w)²) − r√(1 − u²/L²).
    u = np.linspace(0, L / 2, 201)
    thick = (r + w) * np.sqrt(1 - u**2 / (L + w) ** 2) - r * np.sqrt(1 - u**2 / L**2)
    assert got["wall_thickness_mm"] == pytest.approx(float(np.median(thick)), abs=0.5 * 3.0)


def test_a_blurred_image_thickens_the_wall_and_shrinks_the_cavity():
    ph = cardiac(GRID, 1, seed=7)
    truth = lv_measures(lv_geometry_from_phantom(ph, 0), GRID)
    img = lv_measures(estimate_lv_axis(blurred(ph), GRID), GRID)
    assert img["wall_thickness_mm"] > truth["wall_thickness_mm"]
    assert img["cavity_volume_ml"] < truth["cavity_volume_ml"]


def test_measures_need_a_mask():
    from spectdl.cardiac import LVGeometry

    lv = LVGeometry.from_axis((0, 0, 0), (1, 1, -1), -20, 40, 50)
    with pytest.raises(InputError, match="mask"):
        lv_measures(lv, 6.4)
    with pytest.raises(InputError, match="boolean tensor or array"):
        lv_measures(lv, 6.4, mask=[[True]])
    with pytest.raises(InputError, match="empty"):
        lv_measures(lv, 6.4, mask=np.zeros((8, 8, 8), bool))
