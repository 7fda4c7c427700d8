import math

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.noise.scans import TC99M_HALF_LIFE_MIN, ScanKinetics, decay_factor, random_motion, repeat_scan, warp

LABELS = {"outside": 0, "soft_tissue": 1, "bone": 2, "bladder": 4}


def test_decay_halves_in_one_half_life_and_kinetics_follow_their_formulas():
    assert decay_factor(TC99M_HALF_LIFE_MIN) == pytest.approx(0.5)
    assert decay_factor(-TC99M_HALF_LIFE_MIN) == pytest.approx(2.0)
    k = ScanKinetics(soft_tissue_washout_per_h=0.2, bladder_filling_per_h=0.6)
    d = 2 ** (-30 / TC99M_HALF_LIFE_MIN)
    assert k.factor("soft_tissue", 30) == pytest.approx(d * math.exp(-0.1))
    assert k.factor("bladder", 30) == pytest.approx(d * 1.3)
    assert k.factor("bone", 30) == pytest.approx(d)
    assert k.factor("bladder", -200) == 0.0  # an empty bladder, not a negative one
    img = torch.full((1, 4, 4), 10.0)
    lab = torch.tensor([[0, 1, 2, 4]] * 4)[None]
    out = k.apply(img, lab, LABELS, 30)
    torch.testing.assert_close(out[0, 0], 10 * torch.tensor([d, d * math.exp(-0.1), d, d * 1.3], dtype=out.dtype))
    with pytest.raises(InputError, match="soft_tissue_washout_per_h"):
        ScanKinetics(soft_tissue_washout_per_h=-1.0)


def test_motion_is_bounded_recorded_and_reproducible():
    shape, px = (200, 80), 2.26
    half_diag = math.hypot(*(n / 2 for n in shape)) * px
    for seed in range(12):
        m = random_motion(shape, px, torch.Generator().manual_seed(seed), max_shift_mm=5.0, max_rotation_deg=1.0,
                          max_nonrigid_mm=6.0)
        bound = math.sqrt(2) * 5.0 + math.radians(1.0) * half_diag + 6.0
        mag = np.sqrt((m.field_px**2).sum(0)).max() * px
        assert mag == pytest.approx(m.max_displacement_mm) and mag <= bound
        assert abs(m.shift_mm[0]) <= 5 and abs(m.shift_mm[1]) <= 5 and abs(m.rotation_deg) <= 1
        assert 0 <= m.nonrigid_mm <= 6 and set(m.record()) >= {"shift_row_mm", "max_displacement_mm"}
    a = random_motion(shape, px, torch.Generator().manual_seed(3))
    b = random_motion(shape, px, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a.field_px, b.field_px)
    still = random_motion(shape, px, torch.Generator().manual_seed(3), max_shift_mm=0, max_rotation_deg=0,
                          max_nonrigid_mm=0)
    assert still.max_displacement_mm == 0


def test_a_rigid_shift_moves_the_centroid_by_the_shift():
    rows, cols = np.mgrid[0:64, 0:48]
    blob = torch.as_tensor(np.exp(-((rows - 30.0) ** 2 + (cols - 20.0) ** 2) / 20.0))
    m = random_motion((64, 48), 1.0, torch.Generator().manual_seed(0), max_shift_mm=4.0, max_rotation_deg=0,
                      max_nonrigid_mm=0)
    out = warp(blob, m.field_px).numpy()
    cy, cx = (out * rows).sum() / out.sum(), (out * cols).sum() / out.sum()
    # output(p) = input(p + shift): the content moves by −shift.
    assert cy == pytest.approx(30.0 - m.shift_mm[0], abs=0.02) and cx == pytest.approx(20.0 - m.shift_mm[1], abs=0.02)


def test_repeat_scan_counts_are_poisson_at_the_shorter_scans_level():
    expected = torch.full((1, 1, 100, 100), 40.0)
    lab = torch.ones_like(expected, dtype=torch.long)  # soft tissue
    k = ScanKinetics()
    counts = repeat_scan(expected, lab, LABELS, speed=2.0, minutes=-20.0, generator=torch.Generator().manual_seed(1),
                         kinetics=k)
    lam = 40.0 / 2 * k.factor("soft_tissue", -20.0)
    assert torch.equal(counts, counts.round())
    n = counts.numel()
    assert abs(float(counts.mean()) - lam) < 5 * math.sqrt(lam / n)
    assert float(counts.var()) == pytest.approx(lam, rel=0.05)  # Poisson: variance = mean
    with pytest.raises(InputError, match="speed"):
        repeat_scan(expected, lab, LABELS, speed=0.5, minutes=0, generator=torch.Generator())
