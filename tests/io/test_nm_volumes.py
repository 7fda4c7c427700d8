"""Reconstructed NM/PT volumes and SUV: decay correction checked against the F-18 half-life."""

import datetime as dt

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from spectdl.errors import InputError
from spectdl.io import read_volume_series, suv, suv_factor

from .conftest import DELETE

F18_HALF_LIFE_S = 6586.2  # 109.77 min (NNDC)


def _radiopharm(dose=370e6, start="100000", half=F18_HALF_LIFE_S):
    item = Dataset()
    if dose is not None:
        item.RadionuclideTotalDose = dose
    item.RadionuclideHalfLife = half
    item.RadiopharmaceuticalStartTime = start
    return Sequence([item])


def _pt_series(slice_series, name="pt", weight=70.0, dose=370e6, acq_time="110000", **kw):
    vol = np.random.default_rng(1).uniform(0, 5000, size=(6, 5, 4))
    extra = dict(Units="BQML", DecayCorrection="START", SeriesDate="20240102", SeriesTime="105500",
                 AcquisitionDate="20240102", AcquisitionTime=acq_time,
                 RadiopharmaceuticalInformationSequence=_radiopharm(dose))
    if weight is not None:
        extra["PatientWeight"] = weight
    extra.update(kw)
    folder = slice_series(name, vol, modality="PT", slope=0.25, intercept=0.0, signed=False, extra=extra)
    return folder, vol


def test_pt_series_values_and_suv(slice_series):
    folder, vol = _pt_series(slice_series)
    v = read_volume_series(folder)
    assert v.units == "BQML" and v.modality == "PT"
    assert np.allclose(v.data.numpy(), np.rint(vol / 0.25) * 0.25)
    # one hour after injection 68.46 % of F-18 remains (2^(-60/109.77))
    remaining = 2.0 ** (-3600.0 / F18_HALF_LIFE_S)
    assert remaining == pytest.approx(0.6846, abs=1e-4)
    expected = 70_000.0 / (370e6 * remaining)  # g / Bq
    assert suv_factor(v) == pytest.approx(expected, rel=1e-9)
    assert torch.allclose(suv(v), v.data * expected)


def test_missing_weight_names_the_tag_unless_passed(slice_series):
    folder, _ = _pt_series(slice_series, weight=None)
    v = read_volume_series(folder)
    with pytest.raises(InputError, match=r"PatientWeight \(0010,1030\) is missing"):
        suv_factor(v)
    assert suv_factor(v, weight_kg=70.0) == pytest.approx(70_000.0 / (370e6 * 2 ** (-3600 / F18_HALF_LIFE_S)))


def test_missing_dose_and_time_can_be_passed(slice_series):
    folder, _ = _pt_series(slice_series, dose=None)
    v = read_volume_series(folder)
    with pytest.raises(InputError, match=r"RadionuclideTotalDose \(0018,1074\)"):
        suv_factor(v)
    f = suv_factor(v, injected_dose_bq=200e6, injection_time=dt.datetime(2024, 1, 2, 9, 0, 0))
    assert f == pytest.approx(70_000.0 / (200e6 * 2 ** (-7200 / F18_HALF_LIFE_S)))


def test_admin_decay_correction_needs_no_decay_factor(slice_series):
    folder, _ = _pt_series(slice_series, DecayCorrection="ADMIN")
    assert suv_factor(read_volume_series(folder)) == pytest.approx(70_000.0 / 370e6)


def test_suv_needs_bqml(slice_series):
    folder, _ = _pt_series(slice_series, Units="CNTS")
    with pytest.raises(InputError, match=r"Units \(0054,1001\) is 'CNTS'"):
        suv(read_volume_series(folder))


def test_nm_recon_tomo_multiframe(write_dataset):
    nx, ny, nz = 5, 4, 3
    frames = np.arange(nz * ny * nx, dtype=np.uint16).reshape(nz, ny, nx)  # [frame, row, col]
    ds = Dataset()
    ds.Modality = "NM"
    ds.ImageType = ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.FrameOfReferenceUID = "1.2.3.5"
    ds.NumberOfFrames = nz
    ds.Rows, ds.Columns = ny, nx
    ds.PixelSpacing = [3.0, 2.0]
    ds.SpacingBetweenSlices = 4.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.FrameIncrementPointer = 0x00540080
    ds.SliceVector = list(range(1, nz + 1))
    det = Dataset()
    det.ImagePositionPatient = [-10.0, -20.0, 50.0]
    det.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.DetectorInformationSequence = Sequence([det])
    ds.PixelData = frames.tobytes()
    path = write_dataset(ds, "1.2.840.10008.5.1.4.1.1.20", "recon.dcm")
    v = read_volume_series(path)
    assert v.shape == (nx, ny, nz)
    assert float(v.data[4, 1, 2]) == float(frames[2, 1, 4])  # data[x, y, z] = frame z, row y, column x
    expected = np.array([[2.0, 0, 0, -10.0], [0, 3.0, 0, -20.0], [0, 0, 4.0, 50.0], [0, 0, 0, 1]])
    assert np.allclose(v.affine, expected)


def test_projections_are_not_a_volume(nm_file):
    with pytest.raises(InputError, match="expected 'RECON TOMO'"):
        read_volume_series(nm_file())


def test_ct_is_not_an_emission_volume(slice_series):
    folder = slice_series("ct", np.zeros((3, 3, 2)))
    with pytest.raises(InputError, match=r"Modality \(0008,0060\) is 'CT'; expected 'NM' or 'PT'"):
        read_volume_series(folder)


@pytest.mark.parametrize("changes, pattern", [
    ({"RescaleSlope": "0"}, r"RescaleSlope \(0028,1053\) is '0'; expected a number, a nonzero value"),
    ({"RescaleSlope": ("FD", float("nan"))}, r"RescaleSlope \(0028,1053\) is nan; expected a finite number"),
    ({"RescaleIntercept": ("LO", "abc")}, r"RescaleIntercept \(0028,1052\) is 'abc'; expected a number"),
    ({"PatientWeight": ("FD", float("inf"))}, r"PatientWeight \(0010,1030\) is inf; expected a finite number"),
    ({"PatientWeight": "-70"}, r"PatientWeight \(0010,1030\) is '-70'; expected a number, 0 ≤ value ≤ 1000 kg"),
    ({"RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose": "-5"},
     r"RadionuclideTotalDose \(0018,1074\) in RadiopharmaceuticalInformationSequence item 1 is '-5'"),
    ({"ImagePositionPatient": ["0", "0", "1e9"]}, r"ImagePositionPatient \(0020,0032\) is .*±?-?100000"),
])
def test_malformed_values_of_a_pt_series_are_named(slice_series, edit_dicom, changes, pattern):
    # Every slice edited: per-slice tags and the series' reference slice alike hold the bad value.
    folder, _ = _pt_series(slice_series)
    files = sorted(folder.iterdir())
    for f in files:
        edit_dicom(f, changes)
    with pytest.raises(InputError, match=pattern) as err:
        read_volume_series(folder)
    assert any(str(f) in str(err.value) for f in files)


def test_absent_rescale_means_the_stored_values(slice_series, edit_dicom):
    # Rescale Slope/Intercept are optional in NM: absent, the stored values are taken as they are.
    folder, vol = _pt_series(slice_series)
    for f in sorted(folder.iterdir()):
        edit_dicom(f, {"RescaleSlope": DELETE, "RescaleIntercept": DELETE})
    v = read_volume_series(folder)
    stored = np.round(vol / 0.25)  # the writer stored the values at slope 0.25
    np.testing.assert_allclose(v.data.numpy(), stored, atol=1.0)
