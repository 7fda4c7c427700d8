import numpy as np
import pytest
import torch

from spectdl.cardiac import estimate_lv_axis, lv_geometry_from_phantom, polar_map, segment_labels
from spectdl.errors import InputError
from spectdl.phantoms.cardiac import LABELS

from ._images import GRID, blurred, phantoms


@pytest.fixture(scope="module")
def ph():
    return phantoms(2, seed=5)


def test_segments_partition_the_myocardium_exactly_once(ph):
    for b in range(ph.batch_size):
        truth = lv_geometry_from_phantom(ph, b)
        myo = truth.mask
        seg = segment_labels(myo, GRID, truth).numpy()
        assert ((seg > 0) == myo).all()  # every myocardium voxel has a segment, nothing else has one
        counts = np.bincount(seg[myo], minlength=18)
        assert counts[0] == 0 and (counts[1:] > 0).all() and counts.sum() == myo.sum()
        # The apex (17) is the cap past the cavity, u > L, recomputed here from the phantom's numbers.
        idx = np.argwhere(myo)
        pts = (idx - (np.array(myo.shape) - 1) / 2) * GRID.voxel_size_mm[0]
        u = (pts - ph.info["lv_centre_mm"][b].numpy()) @ ph.info["lv_axis"][b].numpy()
        L = float(ph.info["lv_long_mm"][b])
        np.testing.assert_array_equal(seg[myo] == 17, u > L)
        # Basal ring (1..6) holds the voxels from the base plane to a third of the way to the cavity's end.
        t = (u + L / 2) / (1.5 * L)
        np.testing.assert_array_equal(seg[myo] <= 6, t < 1 / 3)


def test_ring_samples_fall_in_each_segment_in_the_expected_numbers(ph):
    truth = lv_geometry_from_phantom(ph, 0)
    pm = polar_map(blurred(ph), GRID, truth, n_slices=12, n_angles=36)
    counts = np.bincount(pm.sample_segments(), minlength=18)[1:]
    # 4 rings per third; 60° sectors hold 6 of the 36 rays, 90° sectors 9; the apex 1 + 9 + 9 rays.
    np.testing.assert_array_equal(counts, [24] * 12 + [36] * 4 + [19])
    np.testing.assert_allclose(pm.sample_weights().sum(), 1.0)
    assert pm.values().max() == pytest.approx(100.0)


def test_a_uniform_wall_maps_flat_and_a_sector_defect_maps_to_its_segments():
    healthy = phantoms(1, seed=21)
    pm = polar_map(blurred(healthy), GRID, lv_geometry_from_phantom(healthy, 0))
    seg = pm.segments()
    assert seg.min() > 0.85 * seg.max()  # a wall of one concentration: flat within the blur's edge effects
    sick = phantoms(1, seed=21, defect_extent=1 / 6, defect_severity=0.6, defect_angle_deg=180.0)
    pm2 = polar_map(blurred(sick), GRID, lv_geometry_from_phantom(sick, 0))
    ratio = pm2.segments() / seg
    inferior = [4, 10, 15]  # the 60° sector about 180°: basal and mid inferior, apical inferior
    others = [s for s in range(1, 17) if s not in inferior + [3, 5, 9, 11, 14, 16]]
    assert (ratio[[s - 1 for s in inferior]] < 0.8).all()
    assert (ratio[[s - 1 for s in others]] > 0.95).all()


def test_the_estimated_geometry_gives_the_true_geometrys_map(ph):
    img = blurred(ph, 1)
    a = polar_map(img, GRID, lv_geometry_from_phantom(ph, 1)).segments()
    b = polar_map(img, GRID, estimate_lv_axis(img, GRID)).segments()
    assert np.abs(a - b).max() < 6.0  # per cent of the maximum


def test_polar_map_refuses_bad_layouts_and_objects(ph):
    truth = lv_geometry_from_phantom(ph, 0)
    with pytest.raises(InputError, match="multiples"):
        polar_map(blurred(ph), GRID, truth, n_slices=10)
    with pytest.raises(InputError, match="LVGeometry"):
        polar_map(blurred(ph), GRID, {"axis": (1, 0, 0)})
    with pytest.raises(InputError, match="does not match"):
        segment_labels(torch.ones(4, 4, 4, dtype=torch.bool), GRID, truth)
    with pytest.raises(InputError, match="boolean tensor or array"):
        segment_labels([[True]], GRID, truth)
