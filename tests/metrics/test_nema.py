import dataclasses

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.metrics.functional import (
    background_roi_centres,
    background_variability,
    contrast_recovery,
    nema_sphere_metrics,
    sphere_mask,
)

GRID = VoxelGrid((64, 64, 16), voxel_size_mm=2.0)
CENTRES = [(-18.0, 0.0, 0.0), (18.0, 0.0, 0.0), (0.0, 18.0, 0.0)]
RADII = [8.5, 6.5, 5.0]


def _phantom(background=1.0, sphere=4.0):
    vol = torch.full(GRID.shape, background, dtype=torch.float64)
    for c, r in zip(CENTRES, RADII):
        vol[sphere_mask(GRID, c, r)] = sphere
    return vol


def _background_mask():
    m = torch.ones(GRID.shape, dtype=torch.bool)
    for c, r in zip(CENTRES, RADII):
        m &= ~sphere_mask(GRID, c, r + 6.0)
    return m


def test_sphere_mask_voxel_centres():
    grid = VoxelGrid((5, 5), voxel_size_mm=1.0)
    m = sphere_mask(grid, (0.0, 0.0), 1.0)
    # centres at -2..2: the disc of radius 1 holds the centre and its 4 neighbours
    assert int(m.sum()) == 5 and bool(m[2, 2]) and bool(m[1, 2]) and not bool(m[1, 1])
    m = sphere_mask(VoxelGrid((4, 4, 4), 2.0), (1.0, 1.0, 1.0), 1.8)
    assert int(m.sum()) == 1 and bool(m[2, 2, 2])  # voxel 2 has its centre at +1 mm


def test_known_phantom_gives_suv_4_crc_1_bv_0():
    rows = nema_sphere_metrics(_phantom(), GRID, CENTRES, RADII, activity_ratio=4.0,
                               background_mask=_background_mask())
    assert [r.index for r in rows] == [0, 1, 2]
    for row, r in zip(rows, RADII):
        assert row.suv_mean == pytest.approx(4.0) and row.suv_max == pytest.approx(4.0)
        assert row.contrast_recovery == pytest.approx(1.0)
        assert row.background_mean == pytest.approx(1.0)
        assert row.background_variability == pytest.approx(0.0, abs=1e-15)
        assert row.n_background_rois >= 2 and row.diameter_mm == 2 * r
    columns = set(dataclasses.asdict(rows[0]))
    assert columns >= {"suv_mean", "suv_max", "contrast_recovery", "background_variability"}


def test_partial_volume_sphere_and_bq_per_ml_conversion():
    # sphere holds 2.5 in background 1 for a true ratio of 4: CRC = (2.5 - 1)/(4 - 1) = 0.5
    vol = _phantom(background=5000.0, sphere=12500.0)  # Bq/ml; 370 MBq, 74 kg -> SUV = value / 5000
    rows = nema_sphere_metrics(vol[None, None], GRID, CENTRES[:1], RADII[:1], activity_ratio=4.0,
                               background_centres_mm=[(0.0, -20.0, 0.0), (-20.0, -20.0, 0.0),
                                                      (20.0, -20.0, 0.0)],
                               injected_dose_bq=370e6, weight_kg=74.0)
    assert rows[0].suv_mean == pytest.approx(2.5) and rows[0].contrast_recovery == pytest.approx(0.5)
    assert rows[0].n_background_rois == 3


def test_background_variability_matches_hand_computation():
    vol = _phantom()
    bg_centres = [(-20.0, -20.0, 0.0), (0.0, -20.0, 0.0), (20.0, -20.0, 0.0)]
    levels = [0.9, 1.0, 1.3]
    for c, v in zip(bg_centres, levels):
        vol[sphere_mask(GRID, c, 9.0)] = v
    rows = nema_sphere_metrics(vol, GRID, CENTRES, RADII, activity_ratio=4.0,
                               background_centres_mm=bg_centres)
    cb, sd = np.mean(levels), np.std(levels, ddof=1)
    for row in rows:  # every ROI (radius <= 8.5 mm) lies inside its 9 mm uniform patch
        assert row.background_mean == pytest.approx(cb)
        assert row.background_sd == pytest.approx(sd)
        assert row.background_variability == pytest.approx(sd / cb)
        assert row.contrast_recovery == pytest.approx((4.0 / cb - 1) / 3.0)
    assert background_variability(levels)[2] == pytest.approx(sd / cb)
    assert contrast_recovery(3.0, 1.0, 5.0) == pytest.approx(0.5)


def test_background_roi_centres_lie_inside_the_mask():
    mask = _background_mask()
    centres = background_roi_centres(GRID, mask, 5.0)
    assert len(centres) >= 2
    for c in centres:
        roi = sphere_mask(GRID, c, 5.0)
        assert bool(roi.any()) and bool(mask[roi].all())
    assert len(background_roi_centres(GRID, mask, 5.0, max_rois=3)) == 3


def test_nema_bad_input():
    vol = _phantom()
    with pytest.raises(InputError, match="grid.shape"):
        nema_sphere_metrics(vol[:-1], GRID, CENTRES, RADII)
    with pytest.raises(InputError, match="radii_mm"):
        nema_sphere_metrics(vol, GRID, CENTRES, RADII[:2])
    with pytest.raises(InputError, match="no voxel"):
        nema_sphere_metrics(vol, GRID, [(500.0, 0.0, 0.0)], [5.0])
    with pytest.raises(InputError, match="at least 2"):
        nema_sphere_metrics(vol, GRID, CENTRES, RADII, background_mask=torch.zeros(GRID.shape))
    with pytest.raises(InputError, match="activity_ratio"):
        contrast_recovery(2.0, 1.0, 1.0)
    bad = vol.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        nema_sphere_metrics(bad, GRID, CENTRES, RADII)
    with pytest.raises(InputError, match="both"):
        nema_sphere_metrics(vol, GRID, CENTRES, RADII, injected_dose_bq=1e8)
