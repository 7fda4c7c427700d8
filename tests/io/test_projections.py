"""read_projections against DICOM geometry computed independently (tests/io/conftest.py) and the real file."""

import math

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.io import read_projections, voxel_to_patient
from spectdl.physics import SpectProjector

POINT = np.array([18.0, -26.0, 9.0])
AXIS = np.array([5.0, -7.0, 3.0])


def _backprojection(acq, window=0):
    P = SpectProjector(acq.grid(), acq.orbit)
    y = acq.counts(window)[None, None].double()
    return P.A_adjoint(y)[0, 0]


def _peak_mm(img, affine):
    """Centroid (LPS mm) of the voxels above 90 % of the maximum of a back-projection."""
    w = torch.where(img >= 0.9 * img.max(), img, torch.zeros_like(img)).numpy()
    idx = np.indices(w.shape).reshape(3, -1).T
    ijk = (idx * w.reshape(-1, 1)).sum(0) / w.sum()
    return voxel_to_patient(affine, ijk)


VARIANTS = {
    "default": {},
    "cw": dict(direction="CW"),
    "flipped-columns": dict(detectors=((180.0, -1.0),)),
    "flipped-rows": dict(c0=(0.0, 0.0, 1.0)),
    "cw-flipped-both": dict(direction="CW", detectors=((180.0, -1.0),), c0=(0.0, 0.0, 1.0)),
    "start-90": dict(detectors=((90.0, 1.0),)),
    "two-heads": dict(detectors=((0.0, 1.0), (180.0, 1.0)), n_views=20),
    "two-heads-mirrored": dict(detectors=((0.0, -1.0), (180.0, -1.0)), n_views=20, direction="CW"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_point_source_lands_at_its_patient_position(nm_file, name):
    acq = read_projections(nm_file(f"{name}.dcm", **VARIANTS[name]))
    img = _backprojection(acq)
    found = _peak_mm(img, acq.affine)
    # grid voxels are 4 mm; the back-projection peak is found to well within a voxel
    assert np.abs(found - POINT).max() < 1.5, (name, found)


def test_variants_give_the_same_patient_space_image(nm_file):
    ref = read_projections(nm_file("ref.dcm"))
    img_ref = _backprojection(ref)
    for name in ("cw", "flipped-columns", "flipped-rows", "cw-flipped-both"):
        acq = read_projections(nm_file(f"{name}.dcm", **VARIANTS[name]))
        assert np.allclose(acq.affine, ref.affine, atol=1e-9)
        img = _backprojection(acq)
        assert torch.allclose(img, img_ref, rtol=1e-6, atol=1e-6 * float(img_ref.max())), name


def test_angles_direction_windows_and_timing(nm_file):
    acq = read_projections(nm_file())
    assert acq.windows == [(187.2, 228.8), (166.89, 186.31), (229.63, 251.16)]
    assert acq.window_names[0] == "W187.2"
    # DICOM CC from 180 in 9-degree steps; spectdl theta = -phi, so the orbit turns clockwise
    assert acq.dicom_angles_deg[:3] == (180.0, 189.0, 198.0)
    assert acq.orbit.direction == "cw"
    assert acq.orbit.angles_deg[:3] == pytest.approx((180.0, 171.0, 162.0))
    assert acq.rotation_direction == "CC"
    assert acq.time_per_view_s == 25.0
    assert acq.orbit.radius_mm == (254.0,) * 40
    assert acq.shape == (40, 24, 12)
    assert acq.grid().shape == (24, 24, 12)
    assert acq.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2"
    # windows hold 1000, 250 and 125 counts per view (rounded per pixel)
    totals = [acq.total_counts(i) / 40 for i in range(3)]
    assert totals == pytest.approx([1000.0, 250.0, 125.0], abs=2.0)
    assert acq.window_index(208.0) == 0
    assert acq.tew_windows(0) == (1, 2)
    assert acq.window_width_kev(0) == pytest.approx(41.6)


def test_two_heads_merge_into_one_orbit(nm_file):
    acq = read_projections(nm_file(detectors=((0.0, 1.0), (180.0, 1.0)), n_views=20))
    assert acq.dicom_angles_deg == pytest.approx(tuple(9.0 * k for k in range(40)))
    assert acq.orbit.angles_deg == pytest.approx(tuple((-9.0 * k) % 360.0 for k in range(40)))


def test_per_view_radii_follow_their_views(nm_file):
    radii = [[200.0 + k for k in range(20)], [300.0 + k for k in range(20)]]
    acq = read_projections(nm_file(detectors=((0.0, 1.0), (180.0, 1.0)), n_views=20, radii=radii))
    assert acq.orbit.radius_mm == tuple(float(r) for r in radii[0] + radii[1])


def test_crop_axial_moves_the_affine(nm_file):
    acq = read_projections(nm_file())
    sub = acq.crop_axial(3, 9)
    assert sub.shape == (40, 24, 6)
    assert np.allclose(voxel_to_patient(sub.affine, [0, 0, 0]), voxel_to_patient(acq.affine, [0, 0, 3]))
    assert torch.equal(sub.counts(0), acq.counts(0)[..., 3:9])


def test_missing_radius_can_be_passed(nm_file):
    path = nm_file(drop=("RadialPosition",))
    with pytest.raises(InputError, match=r"RadialPosition \(0018,1142\)"):
        read_projections(path)
    assert read_projections(path, radius_mm=230.0).orbit.radius_mm[0] == 230.0


# ------------------------------------------------------------------ bad input
def _truncated(tmp_path, src):
    data = src.read_bytes()
    out = tmp_path / "truncated.dcm"
    out.write_bytes(data[: len(data) - 3000])
    return out


def _corrupt(tmp_path, src):
    out = tmp_path / "corrupt.dcm"
    out.write_bytes(b"\x00" * 128 + b"NOPE" + b"\x13" * 500)
    return out


BAD = {
    "truncated": (lambda t, s: _truncated(t, s), r"truncated|corrupt"),
    "corrupt": (lambda t, s: _corrupt(t, s), r"not a DICOM file|corrupt"),
    "not-NM": ("modality", r"Modality \(0008,0060\) is 'CT'; expected 'NM'"),
    "no-rotation-direction": ("RotationDirection", r"RotationDirection \(0018,1140\)"),
    "no-start-angle": ("StartAngle", r"StartAngle \(0054,0200\)"),
    "no-rotation-sequence": ("RotationInformationSequence", r"RotationInformationSequence \(0054,0052\)"),
    "no-pixel-spacing": ("PixelSpacing", r"PixelSpacing \(0028,0030\)"),
    "frames-vs-vectors": ("vectors", r"EnergyWindowVector \(0054,0010\) has 119 values but NumberOfFrames"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_projection_files_raise_input_error(tmp_path, nm_file, case):
    how, pattern = BAD[case]
    if callable(how):
        path = how(tmp_path, nm_file("good.dcm"))
    elif how == "modality":
        path = nm_file(modality="CT")
    elif how == "vectors":
        path = nm_file(vector_length_delta=-1)
    else:
        path = nm_file(drop=(how,))
    with pytest.raises(InputError, match=pattern) as info:
        read_projections(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_projections(tmp_path / "absent.dcm")


# ------------------------------------------------------------------ the real file
@pytest.mark.shared
def test_real_lu177_projections(shared_data):
    acq = read_projections(shared_data / "real/lu177_spectct/bed1_projections.dcm")
    # values stated in the data README
    assert acq.windows == [(101.7, 124.3), (187.2, 228.8), (229.63, 251.16), (166.89, 186.31),
                           (124.32, 134.68), (91.2, 100.8)]
    assert acq.shape == (60, 128, 128)
    assert acq.pixel_size_mm == pytest.approx(4.4196)
    assert acq.time_per_view_s == 25.0
    assert acq.collimator == "MEGP"
    assert acq.rotation_direction == "CC"
    steps = np.diff(np.unwrap(np.radians(acq.orbit.angles_deg)))
    assert np.degrees(steps) == pytest.approx([-6.0] * 59)
    assert acq.orbit.radius_mm[0] == pytest.approx(253.7)
    peak = acq.window_index(208.0)
    assert peak == 1
    assert acq.total_counts(peak) == pytest.approx(1.39e6, rel=0.01)
    assert acq.tew_windows(peak) == (3, 2)
    # the grid centre sits on the rotation axis, within a millimetre of GE's own reading (0.3, -6.9)
    centre = voxel_to_patient(acq.affine, [63.5, 63.5, 63.5])
    assert centre[:2] == pytest.approx([0.3, -6.9], abs=1.0)
    assert math.isclose(acq.affine[2, 2], 4.4196)


def test_rebin_sums_blocks_and_keeps_the_centre(nm_file):
    acq = read_projections(nm_file())
    coarse = acq.rebin(2)
    assert coarse.shape == (40, 12, 6)
    assert coarse.pixel_size_mm == 8.0 and coarse.axial_pixel_size_mm == 8.0
    assert torch.allclose(coarse.counts(1), acq.counts(1).reshape(40, 12, 2, 6, 2).sum((2, 4)))
    centre = voxel_to_patient(acq.affine, [11.5, 11.5, 5.5])
    assert np.allclose(voxel_to_patient(coarse.affine, [5.5, 5.5, 2.5]), centre)
    img = _backprojection(coarse)
    assert np.abs(_peak_mm(img, coarse.affine) - POINT).max() < 3.0  # 8 mm voxels
    with pytest.raises(InputError, match="does not divide"):
        acq.crop_axial(0, 11).rebin(2)


def test_orientation_that_does_not_follow_the_start_angle(nm_file):
    import pydicom

    path = nm_file()
    ds = pydicom.dcmread(str(path))
    ds.DetectorInformationSequence[0].ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    ds.save_as(str(path))
    with pytest.raises(InputError, match="not parallel to the detector face .* ignore_orientation=True"):
        read_projections(path)
    acq = read_projections(path, ignore_orientation=True)  # the pixels follow the default orientation
    assert np.abs(_peak_mm(_backprojection(acq), acq.affine) - POINT).max() < 1.5
